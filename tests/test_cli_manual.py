"""The command line as its manual: every help screen, and every mistake's exit status and one-line message, through
the real `python -m workerctl` (no server needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from workerctl.cli.completion import with_completion
from workerctl.cli.exit_status import MEANINGS
from workerctl.cli.help import GLOBAL_OPTIONS, HELP_OPTION, option_default
from workerctl.cli.job_commands import JOB_COMMANDS
from workerctl.cli.table import COMMAND_ORDER
from workerctl.runtime.settings import SETTINGS
from workerctl.server.commands import SERVER_COMMANDS

COMMANDS = with_completion(JOB_COMMANDS + SERVER_COMMANDS)
GROUPS = sorted({command.words[0] for command in COMMANDS if len(command.words) > 1})

# What Python, or Fire, would show of itself: a type's name, an annotation, Fire's own words.
PYTHON_WORDS = re.compile(r"\b(str|int|float|bool|NoneType|None|Optional|Union|Any|Path|PosixPath|Callable|"
                          r"Sequence|FIRE_METADATA|SetParseFn|kwargs|args)\b|<class|typing\.|\btuple\[|\blist\[|"
                          r"\bdict\[")


def workerctl(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], "HOME": str(home or "/nonexistent"), "PAGER": "cat"}
    return subprocess.run([sys.executable, "-m", "workerctl", *args], capture_output=True, text=True, timeout=60,
                          env=environment)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failing command wrote to stderr (and nothing to stdout)."""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("workerctl: "), result.stderr
    assert result.stdout == "", result.stdout
    return result.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


def help_screens() -> dict[str, str]:
    """Every help screen: the overview, each group's, each command's."""
    screens = {"": workerctl("--help").stdout}
    for words in [[group] for group in GROUPS] + [command.words for command in COMMANDS]:
        result = workerctl(*words, "--help")
        assert result.returncode == 0 and result.stderr == "", (words, result.stderr)
        screens[" ".join(words)] = result.stdout
    return screens


@pytest.fixture(scope="module")
def screens() -> dict[str, str]:
    return help_screens()


def test_the_overview_lists_the_commands_in_their_order_then_the_options_and_exit_statuses(screens):
    overview = screens[""]
    listed = overview.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    first_words = list(dict.fromkeys(line.split()[0] for line in listed.splitlines() if line.startswith("  ")
                                     and not line.startswith("   ")))
    assert first_words == [word for word in COMMAND_ORDER if any(command.words[0] == word for command in COMMANDS)]
    assert first_words[:6] == ["start", "status", "logs", "wait", "stop", "list"]
    assert first_words[-5:] == ["serve", "agent", "users", "certs", "completion"]
    for option in GLOBAL_OPTIONS:
        assert option.flag in overview
    for status, meaning in MEANINGS.items():
        assert re.search(rf"^  {int(status)} +{re.escape(meaning.split()[0])}", overview, re.MULTILINE), status


def test_no_help_screen_shows_python(screens):
    for name, text in screens.items():
        assert not PYTHON_WORDS.search(text), (name, PYTHON_WORDS.search(text))
        assert not re.search(r"--[a-z0-9-]*_", text), (name, re.search(r"--[a-z0-9-]*_\S*", text))


def test_every_command_and_option_has_one_line_of_help_and_shows_its_default(screens):
    for command in COMMANDS:
        shown = flat(screens[command.name])
        assert command.summary and "\n" not in command.summary and command.summary in flat(screens[""]), command
        for argument in command.arguments:
            assert argument.help and "\n" not in argument.help and flat(argument.help) in shown, argument
        for option in (*command.options, HELP_OPTION):
            assert str(option.help) and "\n" not in str(option.help), option
            assert "_" not in option.name and option.name == option.name.lower(), option
            assert flat(str(option.help)) in shown, (command.name, option.name)
            if option.is_switch:
                continue
            if option.required:
                assert f"{flat(str(option.help))} (required)" in shown, (command.name, option.name)
                continue
            default = option_default(option)
            assert default is not None, f"{command.name} {option.flag} says no default"
            assert f"{flat(str(option.help))} (default: {flat(default)})" in shown, (command.name, option.name)


def test_the_defaults_shown_are_the_real_ones(screens):
    serve = flat(screens["serve"])
    for setting in SETTINGS:
        if setting.kind is not bool:
            assert f"{flat(setting.help)} (default: {flat(setting.shown)})" in serve, setting.name
    assert "(default: 10)" in flat(screens["status"])  # --retry's 10.0, as people write it
    assert "at most this many jobs (default: 20)" in flat(screens["list"])
    assert "(default: localhost,127.0.0.1,::1)" in flat(screens["certs"])


def test_no_short_flag_means_two_things_and_h_means_only_help():
    meanings: dict[str, str] = {}
    takes_a_value: dict[str, bool] = {}
    for command in COMMANDS:
        for option in (*command.options, HELP_OPTION):
            if option.short:
                assert meanings.setdefault(option.short, option.name) == option.name, (command.name, option.short)
            # the command line reads a flag given before the command the same way for every command
            assert takes_a_value.setdefault(option.flag, not option.is_switch) is not option.is_switch, option.flag
    assert meanings.get("-h") == "help"


@pytest.mark.parametrize("args, suggestion", [
    (["stat", "x"], "did you mean 'start' or 'status'?"),
    (["lsit"], "did you mean 'list'?"),
    (["user", "add", "x"], "did you mean 'users'"),
    (["cert"], "did you mean 'certs'?"),
    (["users", "ad", "x"], "did you mean 'users add'?"),
    (["users", "rmove", "x"], "did you mean 'users remove'?"),
    (["certs", "renw"], "did you mean 'certs renew'?"),
    (["completoin", "bash"], "did you mean 'completion'?"),
    (["list", "--limt", "3"], "did you mean --limit?"),
    (["logs", "x", "--folow"], "did you mean --follow?"),
    (["users", "add", "x", "--expire", "3d"], "did you mean --expires?"),
    (["users", "rotate", "x", "--user", "u.toml"], "did you mean --users?"),
    (["certs", "--outt", "d"], "did you mean --out?"),
    (["serve", "--log-levle", "INFO"], "did you mean --log-level?"),
    (["--jsn", "status", "x"], "did you mean --json?"),
])
def test_an_unknown_command_or_option_is_64_with_a_suggestion(args, suggestion):
    result = workerctl(*args)
    assert result.returncode == 64 and suggestion in one_line(result)


@pytest.mark.parametrize("args, status, says", [
    (["frobnicate"], 64, "unknown command 'frobnicate' (see 'workerctl --help')"),
    (["users", "zzz"], 64, "see 'workerctl users --help'"),
    (["users"], 64, "'users' needs one of: add, rotate, remove, list"),
    (["status"], 64, "status needs JOB_ID"),
    (["status", "a", "b"], 64, "unexpected argument 'b'"),
    (["list", "--limit", "ten"], 64, "--limit must be a whole number, not 'ten'"),
    (["status", "x", "--retry", "soon"], 64, "--retry must be a number, not 'soon'"),
    (["start", "ls", "-l"], 64, 'quote the command as one argument'),
    (["completion", "tcsh"], 64, "completion takes bash, zsh or fish, not 'tcsh'"),
    (["status", "x", "--config", "/nonexistent/config.toml"], 78, "settings file /nonexistent/config.toml does not "
                                                                  "exist"),
    (["status", "x", "--token-file", "/nonexistent/token"], 78, "cannot read token file"),
    (["status", "x", "--token", "t", "--ca", "/nonexistent/ca.pem"], 78, "cannot use the CA certificate"),
    (["status", "x", "--token", "t", "--server", "http://127.0.0.1:1"], 64, "must be an https:// URL"),
])
def test_every_mistake_is_one_line_with_its_exit_status(args, status, says):
    result = workerctl(*args)
    assert result.returncode == status and says in one_line(result)


def test_an_unreachable_server_is_69_in_one_line(tmp_path):
    ca = Path(__file__).resolve().parent.parent / "certs" / "ca.pem"
    result = workerctl("status", "x", "--server", "https://127.0.0.1:1", "--token", "t", "--ca", str(ca),
                       "--retry", "0")
    assert result.returncode == 69 and "127.0.0.1:1" in one_line(result)


@pytest.mark.slow
def test_users_mistakes_are_64_or_65_and_only_a_broken_users_file_is_78(tmp_path):
    users = str(tmp_path / "users.toml")
    added = workerctl("users", "add", "carol", "--users", users)
    assert added.returncode == 0 and added.stdout.strip()
    cases = [
        (["users", "add", "carol"], 65, "there is already a user 'carol'"),
        (["users", "rotate", "dave"], 65, "there is no user 'dave'"),
        (["users", "remove", "dave"], 65, "there is no user 'dave'"),
        (["users", "add", "no body"], 64, "the user name 'no body' is not valid"),
        (["users", "remove", "-x"], 64, "users remove has no option -x"),
        (["users", "rotate", "car ol"], 64, "the user name 'car ol' is not valid"),
        (["users", "add", "erin", "--expires", "3y"], 64, "--expires must be a whole number"),
        (["users", "rotate", "carol", "--expires", "soon"], 64, "--expires must be a whole number"),
    ]
    for args, status, says in cases:
        result = workerctl(*args, "--users", users)
        assert (result.returncode, says in one_line(result)) == (status, True), (args, result.stderr)
    assert workerctl("users", "list", "--users", users).stdout == "carol\n"  # none of that changed anything

    (tmp_path / "broken.toml").write_text("[users.carol]\ntoken_sha256 = 'not a hash'\n")
    for args in (["users", "list"], ["users", "add", "erin"], ["users", "rotate", "carol"]):
        result = workerctl(*args, "--users", str(tmp_path / "broken.toml"))
        assert result.returncode == 78 and "token_sha256" in one_line(result), args
    result = workerctl("users", "remove", "carol", "--users", str(tmp_path / "missing.toml"))
    assert result.returncode == 78 and "does not exist" in one_line(result)


@pytest.mark.slow
def test_serve_says_78_for_its_settings_file_and_64_for_its_flags(tmp_path):
    config = tmp_path / "server.toml"
    serve = ["serve", "--data-dir", str(tmp_path / "data"), "--port", "0"]
    for text, says in [("port = 99999\n", "port must be a whole number from 0 to 65535"), ("colour = 'red'\n", "unknown setting 'colour'"),
                       ("containment = 'docker'\n", "containment must be"), ("not toml [", "not valid TOML")]:
        config.write_text(text)
        result = workerctl(*serve, "--config", str(config))
        assert result.returncode == 78 and says in one_line(result) and str(config) in result.stderr, text
    result = workerctl(*serve, "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 78 and "cannot read settings file" in one_line(result)
    result = workerctl(*serve, "--containment", "docker")
    assert result.returncode == 64 and "containment must be" in one_line(result)


def test_help_for_an_unknown_command_is_the_same_one_line_error():
    result = workerctl("stats", "--help")
    assert result.returncode == 64 and "did you mean 'status'" in one_line(result)


def test_a_group_lists_its_commands(screens):
    for group in GROUPS:
        for command in COMMANDS:
            if len(command.words) > 1 and command.words[0] == group:
                assert command.name in screens[group] and command.summary in flat(screens[group])
