"""The one way the protocol declares a field: a msgspec Struct attribute whose annotation carries its constraints,
its help and the sentence that says what it must be, and whose `msgspec.field(name=...)` (or the Struct's
`rename`) gives its JSON name. From that one declaration msgspec checks a value and encodes and decodes it, the
API document takes its JSON Schema (openapi.py), the command line its help, and `refusal` the one sentence a
request that breaks it is refused with. What only one reader needs rides in the same declaration as
`Meta(extra=...)`, and `fields_of` hands it back (the server's settings keep their flags' details there).

    offset: Annotated[int, rule("be a whole number of bytes, 0 or more", ge=0), described("the output from ...")]
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import msgspec
from msgspec import Meta

_RULE = "must"
_ERROR_PATH = re.compile(r" - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_KEYS = "<names>"  # the step into a dict's keys (msgspec's "`key` in `$.env`")


def rule(must: str, **constraints: Any) -> Meta:
    """Constraints msgspec checks and JSON Schema states, with what a value must be, said for a person:
    `rule("be a whole number from 1 to 1000", ge=1, le=1000)`."""
    return Meta(**constraints, extra={_RULE: must})


def whole(pattern: str) -> str:
    """A pattern the whole string must match, in JSON Schema's dialect and in Python's (msgspec checks patterns
    with `re.search`): Python's `$` also matches before a final newline, so the end is where no character
    follows."""
    return f"^(?:{pattern})(?![\\s\\S])"


def described(help: str) -> Meta:
    """A field's help, for the API document and the command line."""
    return Meta(description=help)


class FieldInfo(NamedTuple):
    """One field of a Struct, as the command line and the API document see it."""

    attribute: str  # "job_id"
    name: str  # its JSON name: "jobID"
    help: str
    required: bool
    default: Any
    rule: str | None  # what a value must be, said for a person: "be a whole number from 1 to 1000"
    extra: dict[str, Any]  # what else its declaration's Meta(extra=...) says, for a reader of its own


def fields_of(cls: type) -> tuple[FieldInfo, ...]:
    """The fields of a Struct, in order, with the help, rule and extra metadata their declarations give."""
    return tuple(FieldInfo(field.name, field.encode_name, _help(field.type), field.required,
                           None if field.required else field.default, _rule_at(field.type, []), _extra(field.type))
                 for field in msgspec.inspect.type_info(cls).fields)  # type: ignore[attr-defined]


def _help(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.Metadata):
        return str((info.extra_json_schema or {}).get("description") or _help(info.type))
    if isinstance(info, msgspec.inspect.UnionType):
        return next(filter(None, map(_help, info.types)), "")
    return ""


def _extra(info: msgspec.inspect.Type) -> dict[str, Any]:
    if isinstance(info, msgspec.inspect.Metadata):
        own = {key: value for key, value in (info.extra or {}).items() if key != _RULE}
        return {**_extra(info.type), **own}
    if isinstance(info, msgspec.inspect.UnionType):
        return next(filter(None, map(_extra, info.types)), {})
    return {}


def refusal(cls: type, error: msgspec.ValidationError) -> str:
    """The sentence that says which field of `cls` broke which rule, from msgspec's report of it."""
    text = str(error)
    found = _ERROR_PATH.search(text)
    what = text[:found.start()] if found else text
    steps = [named or index for named, index in _STEP.findall(found.group("path") if found else "")]
    unknown = _UNKNOWN.match(what)
    if unknown:
        return f"unknown field in {_shown_path(steps) or 'the request'}: {unknown.group('name')}"
    missing = _MISSING.match(what)
    if missing:
        steps.append(missing.group("name"))
    if found and found.group("key"):
        steps.append(_KEYS)
    must = _rule_at(msgspec.inspect.type_info(cls), steps)
    where = _shown_path(steps)
    return f"{where} must {must}" if must else f"{where or 'the request'} is not valid: {what}"



def _shown_path(steps: list[str]) -> str:
    """How a person names a field or an item of one: `labels[2]`, `limits.cpus`, `env values`, `env names`."""
    shown = ""
    for step in steps:
        if step == "...":
            shown += " values"
        elif step == _KEYS:
            shown += " names"
        else:
            shown += f"[{step}]" if step.isdigit() else (f".{step}" if shown else step)
    return shown


def _rule_at(info: msgspec.inspect.Type, steps: list[str]) -> str | None:
    """The rule of the innermost declaration along `steps` that has one."""
    found = None
    for step in [None, *steps]:
        if step is not None:
            info = _step(info, step)
        while True:
            if isinstance(info, msgspec.inspect.Metadata):
                found = (info.extra or {}).get(_RULE, found)
                info = info.type
            elif isinstance(info, msgspec.inspect.UnionType):
                info = next(member for member in info.types if not isinstance(member, msgspec.inspect.NoneType))
            else:
                break
    return found


def _step(info: msgspec.inspect.Type, step: str) -> msgspec.inspect.Type:
    if isinstance(info, msgspec.inspect.StructType):
        return next(field.type for field in info.fields if field.encode_name == step)
    if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
        return info.item_type
    if isinstance(info, msgspec.inspect.DictType):
        return info.key_type if step == _KEYS else info.value_type
    return info
