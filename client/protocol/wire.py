"""Dataclasses as JSON objects: each field may name itself on the wire (`jobID` for `job_id`), and two
conversions, `to_wire` and `from_wire`, turn instances into JSON-ready dicts and back."""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")
_WIRE = "wire"


def wire_field(name: str, **options: Any) -> Any:
    """A dataclass field called `name` on the wire."""
    metadata = {**options.pop("metadata", {}), _WIRE: name}
    return dataclasses.field(metadata=metadata, **options)


@functools.cache
def _names(cls: Any) -> tuple[tuple[str, str], ...]:
    """(attribute, wire name) for each field of `cls`."""
    return tuple((field.name, field.metadata.get(_WIRE, field.name)) for field in dataclasses.fields(cls))


def _dataclass_in(hint: Any) -> Any:
    """The dataclass a type hint names, alone or with None (`Limits | None`); None if it names none."""
    if typing.get_origin(hint) is tuple:
        return None
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


@functools.cache
def _nested(cls: Any) -> tuple[str, ...]:
    """The wire names of the fields of `cls` that hold dataclasses or tuples, which their JSON form spells out."""
    hints = typing.get_type_hints(cls)
    return tuple(wire for attribute, wire in _names(cls)
                 if typing.get_origin(hints[attribute]) is tuple or _dataclass_in(hints[attribute]))


def to_wire(instance: Any) -> dict[str, Any]:
    """The JSON-ready dict of a dataclass instance, nested dataclasses and tuples of them included."""
    cls = type(instance)
    wired = {wire: getattr(instance, attribute) for attribute, wire in _names(cls)}
    for wire in _nested(cls):
        wired[wire] = _plain(wired[wire])
    return wired


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value):
        return to_wire(value)
    return value


@functools.cache
def _converters(cls: Any) -> dict[str, Any]:
    """For each attribute whose JSON form differs from its type (an enum, a tuple, a dataclass), the callable
    that turns the JSON value into it."""
    converters: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if isinstance(hint, type) and issubclass(hint, Enum):
            converters[name] = hint
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            converters[name] = (functools.partial(_many, item) if dataclasses.is_dataclass(item) else tuple)
        elif _dataclass_in(hint) is not None:
            converters[name] = functools.partial(from_wire, _dataclass_in(hint))
    return converters


def _many(item: type, values: list[Any]) -> tuple[Any, ...]:
    return tuple(from_wire(item, value) for value in values)


def from_wire(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of `cls` from its JSON-ready dict; TypeError, ValueError or KeyError if it does not fit.
    Keys the dict lacks take their defaults; keys `cls` does not know are ignored."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__} must be a JSON object")
    converters = _converters(cls)
    values = {}
    for attribute, wire in _names(cls):
        if wire in data:
            value = data[wire]
            convert = converters.get(attribute)
            values[attribute] = value if convert is None or value is None else convert(value)
    return cls(**values)
