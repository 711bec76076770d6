"""The command line as a table: each command with its arguments and options, declared once.

Reading a command line (command_line.py), help (help.py), shell completion (completion.py) and the README's
tables all read these declarations, so they cannot drift apart. A command's `run` is called with its arguments
and options as keywords, each converted to the option's type; an option not given arrives as its default.

The rows are NamedTuples rather than dataclasses because every command line builds the whole table first, and
defining a frozen dataclass costs about a millisecond, a tenth of what a `workerctl status` may spend on
itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from workerctl.cli.exit_status import CliError, ExitStatus

PROGRAM = "workerctl"


def usage_error(message: str) -> CliError:
    return CliError(ExitStatus.USAGE, message)


class ApiHelp(NamedTuple):
    """An option's help that is an API field's, looked up in the API's table only when help is shown: importing
    that table costs a command more than the rest of its own code."""

    action: str  # "list"
    attribute: str  # the request's field: "status"
    more: str = ""  # what follows the field's help: "; with --cert, ..."

    def __str__(self) -> str:
        from workerctl.protocol.actions import ACTIONS, Action, api_fields

        fields = api_fields(ACTIONS[Action(self.action)])
        return next(field.help for field in fields if field.attribute == self.attribute) + self.more


class Option(NamedTuple):
    name: str  # as typed, without the dashes: "job-timeout"
    help: str | ApiHelp  # one line; help.py shows it with str()
    kind: type = str  # str, int, float, bool (a switch, taking no value) or Path
    default: Any = None
    shown_default: str | None = None  # what help shows as the default, where `default` is not it
    short: str | None = None  # a one-letter alias, "-f"
    metavar: str | None = None
    required: bool = False
    repeatable: bool = False  # may be given more than once; the command gets a tuple of the values
    choices: tuple[str, ...] = ()  # the values shell completion offers, where there are only a few

    @property
    def attribute(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def is_switch(self) -> bool:
        return self.kind is bool

    def convert(self, value: Any) -> Any:
        """The value given on the command line, as this option's type; a usage error if it is not one."""
        if self.repeatable:
            return tuple(self._convert_one(each) for each in value or ())
        return self._convert_one(value)

    def _convert_one(self, value: Any) -> Any:
        if value is None:
            if self.required:
                raise usage_error(f"{self.flag} is required")
            return self.default
        text = str(value)
        try:
            if self.kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError
                return text.lower() == "true"
            if self.kind is int:
                return int(text)
            if self.kind is float:
                return float(text)
            if self.kind is Path:
                return Path(text).expanduser()
        except ValueError:
            what = {bool: "true or false", int: "a whole number", float: "a number"}.get(self.kind, "a value")
            raise usage_error(f"{self.flag} must be {what}, not {text!r}") from None
        return text


class Argument(NamedTuple):
    name: str  # as the run function takes it: "job_id"
    help: str
    choices: tuple[str, ...] = ()  # the values shell completion offers, where there are only a few

    @property
    def shown(self) -> str:
        return self.name.upper()


class Command(NamedTuple):
    name: str  # "start", or "users add" for a command in a group
    summary: str  # one line, for the list of commands
    run: Callable[..., int]
    arguments: tuple[Argument, ...] = ()
    options: tuple[Option, ...] = ()
    details: str = ""  # more text, for the command's own help
    trailing: str | None = None  # the argument that may instead come as words after `--`, quoted for the shell

    @property
    def words(self) -> list[str]:
        return self.name.split()

    def option(self, flag: str) -> Option | None:
        """The option a `--name` or `-x` flag names, if this command has one."""
        for option in self.options:
            if flag in (option.flag, option.short):
                return option
        return None

    def call(self, values: dict[str, Any]) -> int:
        """Run the command with the values given on the command line (None where not given)."""
        converted = {option.attribute: option.convert(values.get(option.attribute)) for option in self.options}
        converted.update((argument.name, values[argument.name]) for argument in self.arguments)
        return self.run(**converted)


# How help and completion list the commands: a job's life (start it, follow it, end it, find it, run it again),
# then the server's; a command not declared yet is skipped, and one missing here comes last.
COMMAND_ORDER = ("start", "status", "logs", "wait", "stop", "list", "restart", "serve", "agent", "users", "certs",
                 "completion")


def in_order(commands: Sequence[Command]) -> list[Command]:
    """`commands` in COMMAND_ORDER, a group's members and any command it does not name in the table's order."""
    rank = {word: index for index, word in enumerate(COMMAND_ORDER)}
    return sorted(commands, key=lambda command: rank.get(command.words[0], len(rank)))


def find_command(commands: Sequence[Command], words: Sequence[str]) -> Command | None:
    """The command whose name is `words`."""
    return next((command for command in commands if command.words == list(words)), None)
