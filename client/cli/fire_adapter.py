"""Everything that bends python-fire to workerctl's command table, in one place.

The table decides which command the words name (with a suggestion for a typo) and which options it has; Fire
binds the rest of the command line to the command's arguments and options. To keep that binding predictable:

- every value stays text (Fire would turn `123`, `1e5` or `True` into numbers and booleans, and a job ID or
  a command must pass through verbatim); the table's options convert them;
- switches are spelled out as `--name=True` (Fire reads `--follow ID` as the value of --follow);
- short options are spelled out as their long names (Fire would take `-h` for the first flag starting with h);
- options given before the command (`workerctl --server URL status ID`) are moved after it, where Fire looks;
- Fire's own errors, written to stderr, become one usage error.
"""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Sequence
from typing import Any

from workerctl.cli.table import PROGRAM, Command, usage_error


def parse(commands: Sequence[Command], args: list[str]) -> tuple[Command, dict[str, Any]]:
    """The command `args` name and the values given for its arguments and options (None for an option not
    given, a list for one that may be repeated); a usage error if they name none or do not fit it."""
    args, trailing = split_at_separator(args)
    args = _options_last(commands, args)
    command, rest = _command(commands, args)
    rest, repeated = _take_repeated(command, rest)
    spelled = _spelled_out(command, rest)
    values = _bind(command, spelled + _trailing(command, spelled, trailing))
    values.update(repeated)
    return command, values


def split_at_separator(args: list[str]) -> tuple[list[str], list[str] | None]:
    """The words before `--`, and those after it (None without one): a command given as words of its own."""
    if "--" not in args:
        return args, None
    at = args.index("--")
    return args[:at], args[at + 1:]


def _take_repeated(command: Command, rest: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Take the options that may be given more than once out of `rest`, with their values (Fire would keep
    only the last)."""
    kept: list[str] = []
    repeated: dict[str, list[str]] = {}
    words = iter(rest)
    for word in words:
        flag, equals, value = word.partition("=")
        option = command.option(flag) if word.startswith("-") else None
        if option is None or not option.repeatable:
            kept.append(word)
            continue
        if not equals:
            value = next(words, None)
            if value is None or _is_option(value):
                raise usage_error(f"{option.flag} needs a value (see '{PROGRAM} {command.name} --help')")
        repeated.setdefault(option.attribute, []).append(value)
    return kept, repeated


def _trailing(command: Command, spelled: list[str], words: list[str] | None) -> list[str]:
    """The words after `--` as the command's trailing argument, quoted for the shell."""
    if words is None:
        return []
    if command.trailing is None:
        raise usage_error(f"{command.name} takes nothing after -- (see '{PROGRAM} {command.name} --help')")
    if not words:
        raise usage_error(f"nothing after -- (see '{PROGRAM} {command.name} --help')")
    if _positionals(command, spelled):
        raise usage_error(f"give the {command.trailing} either quoted or after --, not both")
    import shlex  # here: only this form needs it

    return [f"--{command.trailing}={shlex.join(words)}"]


def _positionals(command: Command, spelled: list[str]) -> list[str]:
    """The words of a spelled-out command line that are not options or their values."""
    found: list[str] = []
    words = iter(spelled)
    for word in words:
        if not word.startswith("-") or word == "-" or _is_number(word):
            found.append(word)
        elif "=" not in word:
            next(words, None)  # an option's value follows it (switches are spelled --name=True)
    return found


def command_words(commands: Sequence[Command], args: list[str]) -> list[str]:
    """The words of `args` that name a command or a group of commands, such as ["users", "add"]."""
    words = [arg for arg in _options_last(commands, args) if not arg.startswith("-")][:2]
    groups = {command.words[0] for command in commands if len(command.words) > 1}
    return words[:2] if words[:1] and words[0] in groups else words[:1]


def _options_last(commands: Sequence[Command], args: list[str]) -> list[str]:
    """Move the options given before the command's name after its arguments."""
    options = {flag: option for command in commands for option in command.options
               for flag in (option.flag, option.short) if flag}
    leading: list[str] = []
    while args and args[0].split("=", 1)[0] in options:
        option = options[args[0].split("=", 1)[0]]
        taken = 1 if option.is_switch or "=" in args[0] else 2
        leading, args = leading + args[:taken], args[taken:]
    return args + leading


def _command(commands: Sequence[Command], args: list[str]) -> tuple[Command, list[str]]:
    groups = {command.words[0]: [other for other in commands if other.words[0] == command.words[0]]
              for command in commands if len(command.words) > 1}
    if args and args[0].startswith("-") and not any(command.option(args[0].split("=", 1)[0]) for command in commands):
        names = list(dict.fromkeys(option.name for command in commands for option in command.options))
        close = _close_matches(args[0].split("=", 1)[0].lstrip("-"), names)[:1]
        hint = f"did you mean --{close[0]}?" if close else f"see '{PROGRAM} --help'"
        raise usage_error(f"no command has an option {args[0].split('=', 1)[0]} ({hint})")
    if not args or args[0].startswith("-"):
        raise usage_error(f"no command given (see '{PROGRAM} --help')")
    alone = next((command for command in commands if command.words == args[:1]), None)
    if args[0] in groups and alone is not None and (len(args) < 2 or args[1].startswith("-")):
        return alone, args[1:]  # a command that is also the name of a group: `certs` beside `certs renew`
    if args[0] in groups:
        members = groups[args[0]]
        if len(args) < 2 or args[1].startswith("-"):
            raise usage_error(f"'{args[0]}' needs one of: {', '.join(member.words[1] for member in members)} "
                              f"(see '{PROGRAM} {args[0]} --help')")
        words, rest = args[:2], args[2:]
        candidates = members
    else:
        words, rest = args[:1], args[1:]
        candidates = list(commands)
    for command in candidates:
        if command.words == words:
            return command, rest
    wanted = " ".join(words)
    if len(words) > 1:  # a command of a group: the group's other commands are what it may be a slip for
        members = [command.words[1] for command in candidates if len(command.words) > 1]
        close = [f"{words[0]} {member}" for member in _close_matches(words[1], members)]
        elsewhere = f"see '{PROGRAM} {words[0]} --help'"
    else:
        close = _close_matches(words[0], list(dict.fromkeys(command.words[0] for command in candidates)))
        elsewhere = f"see '{PROGRAM} --help'"
    hint = f"did you mean {' or '.join(repr(name) for name in close)}?" if close else elsewhere
    raise usage_error(f"unknown command '{wanted}' ({hint})")


def _spelled_out(command: Command, rest: list[str]) -> list[str]:
    """Switches as `--name=True`, short options as long ones; a usage error for an option the command lacks, or
    for one that takes a value and is not given one (Fire would make it the text "True")."""
    spelled = []
    for position, arg in enumerate(rest):
        if not _is_option(arg):
            spelled.append(arg)
            continue
        flag, equals, value = arg.partition("=")
        option = command.option(flag) or command.option(flag.replace("_", "-"))
        if option is None:
            raise usage_error(_unknown_option(command, flag))
        if option.is_switch:
            spelled.append(f"{option.flag}={value if equals else 'True'}")
            continue
        if not equals and (position + 1 == len(rest) or _is_option(rest[position + 1])):
            raise usage_error(f"{option.flag} needs a value (see '{PROGRAM} {command.name} --help')")
        spelled.append(f"{option.flag}{equals}{value}")
    return spelled


def _is_option(arg: str) -> bool:
    return arg.startswith("-") and arg != "-" and not _is_number(arg)


def _is_number(arg: str) -> bool:
    try:
        float(arg)
        return True
    except ValueError:
        return False


def _unknown_option(command: Command, flag: str) -> str:
    close = _close_matches(flag.lstrip("-"), [option.name for option in command.options])[:1]
    hint = f"did you mean --{close[0]}?" if close else f"see '{PROGRAM} {command.name} --help'"
    if command.arguments and command.words == ["start"] and not flag.startswith("--"):
        hint = f'quote the command as one argument, as in: {PROGRAM} start "ls -l"'
    return f"{command.name} has no option {flag} ({hint})"


def _close_matches(word: str, candidates: list[str]) -> list[str]:
    import difflib  # here: only a mistake needs it

    return difflib.get_close_matches(word, candidates, n=2)


def _bind(command: Command, rest: list[str]) -> dict[str, Any]:
    """Let Fire bind `rest` to the command's arguments and options."""
    from workerctl.cli.fire_import import import_fire  # here: every command that never gets this far saves it

    fire = import_fire()
    bound: dict[str, Any] = {}
    parameters = [inspect.Parameter(argument.name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for argument in command.arguments]
    parameters += [inspect.Parameter(option.attribute, inspect.Parameter.KEYWORD_ONLY, default=None)
                   for option in command.options]
    signature = inspect.Signature(parameters)

    def record(*args: Any, **kwargs: Any) -> None:
        bound.update(signature.bind(*args, **kwargs).arguments)

    record.__signature__ = signature  # type: ignore[attr-defined]
    fire.decorators.SetParseFns(**{parameter.name: str for parameter in parameters})(record)
    fire_says = io.StringIO()
    try:
        with contextlib.redirect_stderr(fire_says), contextlib.redirect_stdout(fire_says):
            fire.Fire(record, command=rest, name=f"{PROGRAM} {command.name}")
    except fire.core.FireExit as exit:
        raise usage_error(_fire_error(command, exit)) from None
    return bound


def _fire_error(command: Command, exit: Any) -> str:
    error = exit.trace.elements[-1].ErrorAsStr() if exit.trace and exit.trace.HasError() else "bad usage"
    if "consume arg" in error:
        extra = error.rsplit(":", 1)[-1].strip()
        hint = (f'quote the command as one argument, as in: {PROGRAM} start "ls -l"' if command.words == ["start"]
                else f"see '{PROGRAM} {command.name} --help'")
        return f"unexpected argument {extra!r} for {command.name} ({hint})"
    if "required argument" in error:
        missing = error.rsplit(":", 1)[-1].strip().upper()
        return f"{command.name} needs {missing} (see '{PROGRAM} {command.name} --help')"
    return f"{error[:1].lower() + error[1:]} (see '{PROGRAM} {command.name} --help')"
