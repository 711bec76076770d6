"""Running a command line: help, the version, dispatch through the command table (bound by Fire where asked),
and the one place that turns every failure into one line on stderr and a documented exit status (see
exit_status.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from workerctl.cli.command_line import command_words, parse, split_at_separator
from workerctl.cli.exit_status import CliError, ExitStatus
from workerctl.cli.table import PROGRAM, Command, find_command

ABOUT = "run shell commands on a workerctl server, and follow them"
_HELP_FLAGS = ("-h", "--help")


def run(args: list[str], commands: Sequence[Command], *, bind_with_fire: bool = False) -> int:
    """Run the command line `args` with `commands`; the exit status. With `bind_with_fire`, Fire binds what the
    table read (fire_adapter.py)."""
    if args in (["--version"], ["version"]):
        import importlib.metadata  # here, not at the top: it costs every other command 20 ms

        print(f"{PROGRAM} {importlib.metadata.version('workerctl')}")
        return ExitStatus.OK
    # What follows `--` is a job's command, never ours: `workerctl start -- grep -h x` asks for no help.
    ours, trailing = split_at_separator(args)
    debug = "--debug" in ours
    ours = [arg for arg in ours if arg != "--debug"]
    args = ours if trailing is None else [*ours, "--", *trailing]
    try:
        if not args or any(arg in _HELP_FLAGS for arg in ours):
            sys.stdout.write(_help(commands, [arg for arg in ours if arg not in _HELP_FLAGS]))
            return ExitStatus.OK if args else ExitStatus.USAGE
        command, values = parse(commands, args)
        if bind_with_fire:
            from workerctl.cli.fire_adapter import bind  # here: a job command imports none of it

            values = bind(command, values)
        return command.call(values)
    except CliError as error:
        _say(error.message)
        return error.status
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush is silent
        return ExitStatus.OK
    except Exception as error:  # a bug: say so in one line, with the traceback only on request
        if debug:
            import traceback

            traceback.print_exc()
        _say(f"internal error: {type(error).__name__}: {error} (run with --debug for details)")
        return ExitStatus.SOFTWARE


def _say(message: str) -> None:
    """An error as one line on stderr, whatever its text holds: a script reads one line per failure."""
    print(f"{PROGRAM}: {' '.join(line.strip() for line in message.splitlines() if line.strip())}", file=sys.stderr)


def _help(commands: Sequence[Command], args: list[str]) -> str:
    from workerctl.cli import help  # here: a command that runs needs none of it

    words = command_words(commands, args)
    command = find_command(commands, words)
    if command is not None:
        return help.command_help(command, [other for other in commands if len(other.words) > len(words)
                                           and other.words[0] == command.words[0]])
    if words and any(other.words[0] == words[0] and len(other.words) > 1 for other in commands):
        return help.group(commands, words[0])
    if words:
        parse(commands, words)  # says which command is unknown, and suggests one
    return help.overview(commands, ABOUT)
