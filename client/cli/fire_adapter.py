"""python-fire binding the command lines of the server's commands: serve, agent, users, certs and completion.

The table reads every command line first (command_line.py) and says in its own words what is wrong with one,
so Fire, through its documented entry point, is handed only a command line that fits: the command's arguments
in order, then each option given as `--name=value`, every value kept as text. What Fire binds to the
command's signature is what the command is called with. Should Fire still refuse the line (it takes `-inf`
for a flag, where the table reads a number), that is a usage error in our words like any other.

The job commands never come here (__main__.py): importing Fire imports asyncio, which would cost a
`workerctl status` polled from cron more than all the rest of it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any

from workerctl.cli.table import PROGRAM, Command, usage_error


def bind(command: Command, values: dict[str, Any]) -> dict[str, Any]:
    """`values`, the text the table read for `command`'s arguments and options, as Fire binds them; the options
    that may be repeated stay as the table read them (Fire would keep only the last)."""
    import fire  # here: only the commands that come here import it

    bound: dict[str, Any] = {}
    signature = _signature(command)

    def record(*args: Any, **kwargs: Any) -> None:
        bound.update(signature.bind(*args, **kwargs).arguments)

    record.__signature__ = signature  # type: ignore[attr-defined]
    # Fire would make `123` a number and `True` a boolean: a name or a path passes through as it was typed.
    fire.decorators.SetParseFns(**{name: str for name in signature.parameters})(record)
    words = [values[argument.name] for argument in command.arguments]
    words += [f"{option.flag}={values[option.attribute]}" for option in command.options
              if option.attribute in values and not option.repeatable]
    try:
        # Fire explains a refusal on stderr in several lines of its own; ours is the one line main.py prints.
        with (open(os.devnull, "w") as nowhere, contextlib.redirect_stderr(nowhere),
              contextlib.redirect_stdout(nowhere)):
            fire.Fire(record, command=words, name=f"{PROGRAM} {command.name}")
    except fire.core.FireExit:
        message = f"the words given do not fit {command.name} (see '{PROGRAM} {command.name} --help')"
        raise usage_error(message) from None
    return {**values, **bound}


def _signature(command: Command) -> inspect.Signature:
    """The command's arguments and options as a function's parameters: what Fire binds a command line to."""
    parameters = [inspect.Parameter(argument.name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for argument in command.arguments]
    parameters += [inspect.Parameter(option.attribute, inspect.Parameter.KEYWORD_ONLY, default=None)
                   for option in command.options if not option.repeatable]
    return inspect.Signature(parameters)
