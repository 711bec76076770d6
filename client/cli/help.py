"""Help screens, rendered from the command table: the list of commands with the options and exit statuses
every command shares, a group's commands, and one command's arguments and options with their defaults."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from workerctl.cli.exit_status import MEANINGS
from workerctl.cli.table import PROGRAM, Command, Option, in_order

_WIDTH = 100
HELP_OPTION = Option("help", "show this help", kind=bool, short="-h")
GLOBAL_OPTIONS = (
    Option("help", "show this help; after a command, that command's", kind=bool, short="-h"),
    Option("version", "print the version", kind=bool),
    Option("debug", "when workerctl itself fails, print the traceback too", kind=bool),
)


def overview(commands: Sequence[Command], about: str) -> str:
    rows = [(_synopsis(command), command.summary) for command in in_order(commands)]
    return "\n".join([
        f"{PROGRAM}: {about}", "",
        f"Usage: {PROGRAM} COMMAND [ARGUMENTS] [OPTIONS]", "",
        "Commands:", *_table(rows), "",
        "Options:", *_table([(option_flags(option), str(option.help)) for option in GLOBAL_OPTIONS]), "",
        "Exit status:", *_table([(str(int(status)), meaning) for status, meaning in MEANINGS.items()]), "",
        f"'{PROGRAM} COMMAND --help' shows a command's arguments and options.", "",
    ])


def group(commands: Sequence[Command], name: str) -> str:
    members = [command for command in commands if command.words[0] == name]
    return "\n".join([f"Usage: {PROGRAM} {name} COMMAND [ARGUMENTS] [OPTIONS]", "", "Commands:",
                      *_table([(_synopsis(command), command.summary) for command in members]), "",
                      "Options:", *_table([(option_flags(HELP_OPTION), str(HELP_OPTION.help))]), "",
                      f"'{PROGRAM} {name} COMMAND --help' shows a command's arguments and options.", ""])


def command_help(command: Command, subcommands: Sequence[Command] = ()) -> str:
    """One command's help; `subcommands` for a command that also names a group (`certs`, `certs renew`)."""
    lines = [f"Usage: {PROGRAM} {_synopsis(command)} [OPTIONS]", "", _wrap(command.summary[:1].upper()
                                                                           + command.summary[1:] + ".")]
    if command.details:
        lines += ["", _wrap(command.details)]
    if subcommands:
        lines += ["", "Commands:", *_table([(_synopsis(other), other.summary) for other in subcommands])]
    if command.arguments:
        lines += ["", "Arguments:", *_table([(argument.shown, argument.help) for argument in command.arguments])]
    lines += ["", "Options:", *_table([(option_flags(option), _option_text(option))
                                       for option in (*command.options, HELP_OPTION)]), ""]
    return "\n".join(lines)


def option_flags(option: Option) -> str:
    """How help shows an option: `-f, --follow` or `--limit N`."""
    names = ", ".join(name for name in (option.short, option.flag) if name)
    return names if option.is_switch else f"{names} {option.metavar or option.name.upper()}"


def option_default(option: Option) -> str | None:
    """The default help shows: none for a switch, which is off unless given."""
    if option.is_switch:
        return None
    if option.shown_default is not None:
        return option.shown_default
    if option.default is None:
        return None
    return f"{option.default:g}" if isinstance(option.default, float) else str(option.default)


def _option_text(option: Option) -> str:
    if option.required:
        return f"{option.help} (required)"
    default = option_default(option)
    return str(option.help) if default is None else f"{option.help} (default: {default})"


def _synopsis(command: Command) -> str:
    return " ".join([command.name, *(argument.shown for argument in command.arguments)])


def _table(rows: list[tuple[str, str]]) -> list[str]:
    left = min(max(len(first) for first, _ in rows), 28) + 4
    lines = []
    for first, second in rows:
        wrapped = textwrap.wrap(second, _WIDTH - left, break_on_hyphens=False) or [""]
        if len(first) + 4 > left:
            lines += [f"  {first}", *(" " * left + line for line in wrapped)]
        else:
            lines += [f"  {first:<{left - 2}}{wrapped[0]}", *(" " * left + line for line in wrapped[1:])]
    return lines


def _wrap(text: str) -> str:
    return textwrap.fill(text, _WIDTH, break_on_hyphens=False)
