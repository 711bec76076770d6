"""The command line's table, its reading and its help, in process: which command and values a command line
means, and the usage errors and help it gets."""

from __future__ import annotations

import re

import pytest
from workerctl.cli import help
from workerctl.cli.command_line import parse
from workerctl.cli.exit_status import CliError, ExitStatus
from workerctl.cli.job_commands import JOB_COMMANDS
from workerctl.cli.main import ABOUT
from workerctl.cli.table import find_command
from workerctl.runtime.settings import SETTINGS
from workerctl.server.commands import SERVER_COMMANDS

COMMANDS = JOB_COMMANDS + SERVER_COMMANDS


def parsed(*args: str) -> tuple[str, dict]:
    command, values = parse(COMMANDS, list(args))
    return command.name, {name: value for name, value in values.items() if value is not None}


def usage(*args: str) -> str:
    with pytest.raises(CliError) as raised:
        parse(COMMANDS, list(args))
    assert raised.value.status is ExitStatus.USAGE
    return raised.value.message


@pytest.mark.parametrize("text", ["123", "1e5", "True", "None", "[1,2]", "0x10", "-5", "a,b", "ls -l"])
def test_arguments_pass_through_as_text(text):
    assert parsed("status", text) == ("status", {"job_id": text})
    assert parsed("start", text, "--key", text) == ("start", {"command": text, "key": text})


def test_switches_take_no_value_and_short_options_mean_their_long_ones():
    assert parsed("logs", "-f", "jx") == ("logs", {"job_id": "jx", "follow": "True"})
    assert parsed("logs", "--follow", "jx", "--json") == ("logs", {"job_id": "jx", "follow": "True",
                                                                   "json": "True"})


def test_options_may_come_before_the_command():
    assert parsed("--server", "https://h:1", "--json", "status", "jx") == (
        "status", {"job_id": "jx", "server": "https://h:1", "json": "True"})


def test_values_that_look_like_numbers_and_a_command_after_a_double_dash():
    assert parsed("status", "jx", "--retry", "-5") == ("status", {"job_id": "jx", "retry": "-5"})
    assert parsed("start", "--label", "a", "--", "grep", "a b") == ("start", {"command": "grep 'a b'",
                                                                           "label": ["a"]})


def test_groups_of_commands():
    assert parsed("users", "add", "carol", "--users", "/tmp/u.toml") == (
        "users add", {"name": "carol", "users": "/tmp/u.toml"})


@pytest.mark.parametrize("args, message", [
    ((), "no command given (see 'workerctl --help')"),
    (("stat", "jx"), "unknown command 'stat' (did you mean 'start' or 'status'?)"),
    (("users",), "'users' needs one of: add, rotate, remove, list (see 'workerctl users --help')"),
    (("users", "ad", "x"), "unknown command 'users ad' (did you mean 'users add'?)"),
    (("start", "true", "--bogus"), "start has no option --bogus (see 'workerctl start --help')"),
    (("list", "--limt", "3"), "list has no option --limt (did you mean --limit?)"),
    (("start", "ls", "-l"),
     'start has no option -l (quote the command as one argument, as in: workerctl start "ls -l")'),
    (("status",), "status needs JOB_ID (see 'workerctl status --help')"),
    (("status", "a", "b"), "unexpected argument 'b' for status (see 'workerctl status --help')"),
    (("start", "true", "--host-name"), "--host-name needs a value (see 'workerctl start --help')"),
    (("start", "true", "--key", "--json"), "--key needs a value (see 'workerctl start --help')"),
    (("start", "true", "--label", "--server", "https://h:1"), "--label needs a value (see 'workerctl start --help')"),
])
def test_usage_errors_say_what_is_wrong_in_one_line(args, message):
    assert usage(*args) == message


def test_option_values_are_converted_with_a_clear_message():
    command = find_command(COMMANDS, ["list"])
    with pytest.raises(CliError, match=r"--limit must be a whole number, not 'ten'"):
        command.call({"limit": "ten"})


def test_help_lists_every_command_and_each_commands_options_with_defaults():
    overview = help.overview(COMMANDS, ABOUT)
    for command in COMMANDS:
        assert command.name in overview
    serve = help.command_help(find_command(COMMANDS, ["serve"]))
    for setting in SETTINGS:
        assert f"--{setting.flag_name}" in serve
    words = " ".join(serve.split())
    assert "(default: 8443)" in words and "Optional[" not in words and not re.search(r"--[a-z-]*_", words)
    logs = help.command_help(find_command(COMMANDS, ["logs"]))
    assert "-f, --follow" in logs and "JOB_ID" in logs and "-h, --help" in logs


def test_no_short_option_means_two_things():
    shorts = {}
    for command in COMMANDS:
        for option in command.options:
            if option.short:
                assert shorts.setdefault(option.short, option.name) == option.name


def test_docs_show_the_exit_statuses_as_declared():
    from pathlib import Path

    from workerctl.cli.exit_status import markdown_table

    assert markdown_table() in (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
