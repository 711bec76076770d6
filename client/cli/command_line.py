"""Reading a command line with the command table: which command the words name (with a suggestion for a typo),
and the text given for each of its arguments and options.

Every mistake is found here and said in our own words, before anything runs: words that name no command, an
option the command lacks, an option without its value, an argument missing or one too many. Values stay text
(a job ID or a command passes through verbatim: `123`, `1e5` and `True` are not numbers or booleans here); the
table's options convert them when the command is called. The words are read the way Fire reads them, so that
fire_adapter.py can hand Fire what was read:

- a switch takes no value of its own (`--follow`, or `--follow=false`);
- a short option means its long one;
- options may come before the command (`workerctl --server URL status ID`);
- an option that may be given more than once keeps every value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workerctl.cli.table import PROGRAM, Command, usage_error


def parse(commands: Sequence[Command], args: list[str]) -> tuple[Command, dict[str, Any]]:
    """The command `args` name and the text given for its arguments and options (a list for an option that may
    be repeated; an option not given is absent); a usage error if they name none or do not fit it."""
    args, trailing = split_at_separator(args)
    command, rest = _command(commands, _options_last(commands, args))
    positionals, options = _read(command, rest)
    return command, {**_arguments(command, positionals, trailing), **options}


def split_at_separator(args: list[str]) -> tuple[list[str], list[str] | None]:
    """The words before `--`, and those after it (None without one): a command given as words of its own."""
    if "--" not in args:
        return args, None
    at = args.index("--")
    return args[:at], args[at + 1:]


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


def _read(command: Command, rest: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The words that are not options, and each option's text by its attribute ("True" for a switch given
    without one); a usage error for an option the command lacks, or for one that takes a value and is not given
    one (the next word being another option)."""
    positionals: list[str] = []
    options: dict[str, Any] = {}
    words = iter(rest)
    for word in words:
        if not _is_option(word):
            positionals.append(word)
            continue
        flag, equals, value = word.partition("=")
        option = command.option(flag) or command.option(flag.replace("_", "-"))
        if option is None:
            raise usage_error(_unknown_option(command, flag))
        if not equals and option.is_switch:
            value = "True"
        elif not equals:
            following = next(words, None)
            if following is None or _is_option(following):
                raise usage_error(f"{option.flag} needs a value (see '{PROGRAM} {command.name} --help')")
            value = following
        if option.repeatable:
            options.setdefault(option.attribute, []).append(value)
        else:
            options[option.attribute] = value  # given twice, the last counts
    return positionals, options


def _arguments(command: Command, positionals: list[str], trailing: list[str] | None) -> dict[str, str]:
    """The command's arguments, from the words that are not options and the words after `--`; a usage error for
    one missing or one too many."""
    given = {} if trailing is None else _trailing(command, positionals, trailing)
    expected = [argument for argument in command.arguments if argument.name not in given]
    if len(positionals) > len(expected):
        extra = positionals[len(expected)]
        hint = (f'quote the command as one argument, as in: {PROGRAM} start "ls -l"' if command.words == ["start"]
                else f"see '{PROGRAM} {command.name} --help'")
        raise usage_error(f"unexpected argument {extra!r} for {command.name} ({hint})")
    if len(positionals) < len(expected):
        missing = expected[len(positionals)].shown
        raise usage_error(f"{command.name} needs {missing} (see '{PROGRAM} {command.name} --help')")
    given.update((argument.name, word) for argument, word in zip(expected, positionals))
    return given


def _trailing(command: Command, positionals: list[str], words: list[str]) -> dict[str, str]:
    """The words after `--` as the command's trailing argument, quoted for the shell."""
    if command.trailing is None:
        raise usage_error(f"{command.name} takes nothing after -- (see '{PROGRAM} {command.name} --help')")
    if not words:
        raise usage_error(f"nothing after -- (see '{PROGRAM} {command.name} --help')")
    if positionals:
        raise usage_error(f"give the {command.trailing} either quoted or after --, not both")
    import shlex  # here: only this form needs it

    return {command.trailing: shlex.join(words)}


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
