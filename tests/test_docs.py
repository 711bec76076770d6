"""The documentation is run, so it cannot go stale: every ```sh block of the README and of docs/*.md, and the
commands of every ```cron block, run against a live server and must exit 0 without an API error in their
output; the systemd unit in deploy/ passes `systemd-analyze verify` and its flags are serve's; settings files
shown in the pages load; and the links between the pages lead somewhere.

The blocks of a page run in order, each in a fresh `bash -euo pipefail`, as a reader would paste them, in a
directory that looks like a checkout (`.venv`, and `certs/` holding the test CA and alice's token) with a home
of its own whose settings file names the test server. What a page says of a real host is made the test's own:
the servers https://127.0.0.1:8443 and https://worker.example.com:8443 become the test server, and paths under
/etc/workerctl, /var/lib/workerctl, /var/log/workerctl and /var/backups/workerctl move under a directory of the
test's (the test server's data directory and audit log among them). Cron lines run as cron runs them: `/bin/sh`,
a bare environment, `%` escaped.

A block that cannot run here says why in the page, just before it: `<!-- not run: starts the server -->`.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import Server, Tls, Users, reachable_by_jobs, start_server
from workerctl.runtime.settings import FRONT_END_SETTINGS, SETTINGS, load_settings

pytestmark = pytest.mark.slow  # every page's blocks, each a shell of its own, against live servers

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# README-summary.md is a snippet bench/run.py writes for pasting, its links written from the repository's root.
ALL_PAGES = [ROOT / "README.md", *sorted(page for page in (ROOT / "docs").rglob("*.md")
                                        if page.name != "README-summary.md")]
UNIT = ROOT / "deploy" / "workerctl.service"
AGENT_UNIT = ROOT / "deploy" / "workerctl-agent.service"
UNIT_BINARY = "/opt/workerctl/bin/workerctl"
HOST_PATHS = ("/etc/workerctl", "/var/lib/workerctl", "/var/log/workerctl", "/var/backups/workerctl")
DOC_SERVERS = ("https://127.0.0.1:8443", "https://worker.example.com:8443")
CLIENT_SETTINGS_HEADER = "# ~/.config/workerctl/config.toml"
TOOLS = ("curl", "jq", "sqlite3")  # used by some blocks, not by workerctl
BLOCK_SECONDS = 60

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"<!-- not run: (?P<reason>.*\S) -->")
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(?P<title>.+?) *#* *$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    language: str
    text: str
    not_run: str | None  # why, if the page says it cannot run in a test

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _fences(lines: list[str]) -> Iterator[tuple[int, int, str, str]]:
    """(opening line, closing line, indentation, info string) of each fenced block, CommonMark style: a fence
    closes on a run of at least as many of the same character, so longer fences can show shorter ones."""
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}} *$")
        end = next((number for number in range(index + 1, len(lines)) if closing.match(lines[number])), len(lines))
        yield index, end, opening["indent"], opening["info"].strip()
        index = end + 1


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found = []
    for start, end, indent, info in _fences(lines):
        body = [line.removeprefix(indent) for line in lines[start + 1:end]]
        marker = _NOT_RUN.fullmatch(lines[start - 1].strip()) if start else None
        found.append(Block(page, start + 1, info.split()[0] if info else "", "\n".join(body) + "\n",
                           marker["reason"] if marker else None))
    return found


def _runnable(page: Path) -> list[Block]:
    """The page's blocks to run, and the client settings files the blocks after them use."""
    return [block for block in blocks(page) if block.not_run is None and (
        block.language in ("sh", "cron")
        or block.language == "toml" and block.text.startswith(CLIENT_SETTINGS_HEADER))]


@dataclass
class Workspace:
    """A checkout, a home and a host root of the test's own, and the server the pages' commands talk to."""

    root: Path
    home: Path
    checkout: Path
    server: Server

    def substitute(self, text: str) -> str:
        for url in DOC_SERVERS:
            text = text.replace(url, self.server.url)
        for path in HOST_PATHS:
            text = re.sub(rf"(?<![\w./~-]){re.escape(path)}(?![\w-])", str(self.root) + path, text)
        return text

    def shell_environment(self) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items()
                     if not name.startswith("WORKERCTL_") and name != "XDG_CONFIG_HOME"}
        return {**inherited, "HOME": str(self.home), "PAGER": "cat",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def cron_environment(self) -> dict[str, str]:
        return {"HOME": str(self.home), "LOGNAME": pwd.getpwuid(os.getuid()).pw_name, "PATH": "/usr/bin:/bin",
                "SHELL": "/bin/sh"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tls: Tls, users: Users) -> Iterator[Workspace]:
    base = tmp_path_factory.mktemp("docs")
    root = base / "root"
    for path in HOST_PATHS:
        (root / path.lstrip("/")).mkdir(parents=True)
    data_dir = reachable_by_jobs(root / "var/lib/workerctl")
    server = start_server(base, tls, users, "--audit-log", str(root / "var/log/workerctl/audit.jsonl"),
                          "--max-job-timeout", "600", data_dir=data_dir)
    token = users.tokens["alice"]
    home = base / "home"
    settings = home / ".config" / "workerctl"
    settings.mkdir(parents=True)
    (settings / "token").write_text(token + "\n")
    shutil.copy(tls.ca, settings / "ca.pem")
    (settings / "config.toml").write_text(f'server = "{server.url}"\ntoken_file = "~/.config/workerctl/token"\n'
                                          f'ca = "~/.config/workerctl/ca.pem"\n')
    workerctl = Path(sys.executable).parent / "workerctl"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "workerctl").symlink_to(workerctl)  # where pipx puts it
    checkout = base / "checkout"
    (checkout / "certs").mkdir(parents=True)
    (checkout / ".venv").symlink_to(sys.prefix)
    (checkout / "certs" / "dev.token").write_text(token + "\n")
    shutil.copy(tls.ca, checkout / "certs" / "ca.pem")
    yield Workspace(root, home, checkout, server)
    assert server.stop() == 0, server.log()


def _run_shell(workspace: Workspace, block: Block) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", workspace.substitute(block.text)],
                            cwd=workspace.checkout, env=workspace.shell_environment(), capture_output=True,
                            text=True, timeout=BLOCK_SECONDS)
    _check(block, block.text, result)


def _run_cron(workspace: Workspace, block: Block) -> None:
    for line in block.text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or re.match(r"^\w+=", line):
            continue
        command = line.split(None, 5)[5]
        assert not re.search(r"(?<!\\)%", command), f"{block}: cron ends a command at an unescaped %: {line}"
        result = subprocess.run(["/bin/sh", "-c", workspace.substitute(command.replace("\\%", "%"))],
                                cwd=workspace.home, env=workspace.cron_environment(), capture_output=True,
                                text=True, timeout=BLOCK_SECONDS)
        _check(block, line, result)


def _check(block: Block, shown: str, result: subprocess.CompletedProcess[str]) -> None:
    report = f"{block}:\n{shown}\nexit status {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert '"error":' not in result.stdout, report


def _write_client_settings(workspace: Workspace, block: Block) -> None:
    """A page's client settings file becomes the home's, for the blocks after it."""
    (workspace.home / ".config" / "workerctl" / "config.toml").write_text(workspace.substitute(block.text))


@pytest.mark.parametrize("page", [page for page in PAGES if _runnable(page)], ids=lambda page: page.name)
def test_the_page_runs(workspace: Workspace, page: Path) -> None:
    runnable = _runnable(page)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None
               and any(re.search(rf"(^|[\s|($]){tool}\b", block.text, re.M) for block in runnable)]
    if missing:
        pytest.skip(f"{page.name} uses {', '.join(missing)}, not installed here")
    for block in runnable:
        {"sh": _run_shell, "cron": _run_cron, "toml": _write_client_settings}[block.language](workspace, block)


def test_a_block_is_left_out_only_with_a_reason() -> None:
    for page in PAGES:
        marks = [line for line in _outside_fences(page) if _NOT_RUN.search(line)]
        marked = [block for block in blocks(page) if block.not_run is not None]
        assert len(marked) == len(marks), f"{page.name}: a not-run mark stands before no block"
        for block in blocks(page):
            assert block.language not in ("bash", "shell", "shell-session", "zsh"), \
                f"{block}: fence shell commands as sh (run here) or console (a transcript), not {block.language}"
            assert block.not_run is None or block.language == "sh", f"{block}: only sh blocks are run anyway"


def _unit_flags(unit_text: str) -> tuple[list[str], dict[str, object]]:
    """The ExecStart command line of the unit, and its flags as load_settings takes them (`config` among them
    if the unit names a settings file)."""
    joined = re.sub(r"\\\n\s*", " ", unit_text)
    exec_start = next(line for line in joined.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    kinds = {setting.flag_name: setting for setting in SETTINGS}
    flags: dict[str, object] = {}
    words = iter(argv[2:])
    for word in words:
        if word == "--config":
            flags["config"] = next(words)
            continue
        assert word.startswith("--") and word[2:] in kinds, f"ExecStart has {word!r}, not a server flag"
        setting = kinds[word[2:]]
        flags[setting.name] = True if setting.kind is bool else next(words)
    return argv, flags


def test_the_unit_serves_with_serve_flags() -> None:
    argv, flags = _unit_flags(UNIT.read_text())
    assert argv[:2] == [UNIT_BINARY, "serve"]
    settings = load_settings(None, **flags)
    assert settings.host == "0.0.0.0" and str(settings.data_dir) == "/var/lib/workerctl"
    for path in (settings.cert, settings.key, settings.users):
        assert str(path).startswith("/etc/workerctl/")


def test_the_agent_unit_runs_an_agent_with_agent_flags() -> None:
    argv, flags = _unit_flags(AGENT_UNIT.read_text())
    assert argv[:2] == [UNIT_BINARY, "agent"] and flags.pop("config") == "/etc/workerctl/agent.toml"
    assert not set(flags) & set(FRONT_END_SETTINGS) and {"name", "data_dir"} <= set(flags)
    assert str(load_settings(None, **{**flags, "name": "host-1"}).data_dir) == "/var/lib/workerctl"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("unit", [UNIT, AGENT_UNIT], ids=lambda unit: unit.name)
def test_the_units_pass_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point a copy at this installation's workerctl, and change
    # nothing else.
    installed = Path(sys.executable).parent / "workerctl"
    text = unit.read_text()
    assert text.count(UNIT_BINARY) == 1
    copy = tmp_path / unit.name
    copy.write_text(text.replace(UNIT_BINARY, str(installed)))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # Unknown directives and bad values are only warned about, with the file's name: none may be.
    warnings = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0 and not warnings, result.stderr


def test_settings_files_shown_for_serve_and_agent_load(tmp_path: Path) -> None:
    shown = [block for page in PAGES for block in blocks(page)
             if block.language == "toml" and re.search(r"(serve|agent)\.toml", block.text.splitlines()[0])]
    assert shown
    for block in shown:
        file = tmp_path / "serve.toml"
        file.write_text(block.text)
        load_settings(file)


def _slug(title: str) -> str:
    """The anchor GitHub gives a heading."""
    title = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def _outside_fences(page: Path) -> list[str]:
    lines = page.read_text().splitlines()
    for start, end, _indent, _info in reversed(list(_fences(lines))):
        del lines[start:end + 1]
    return lines


def _anchors(page: Path) -> set[str]:
    return {_slug(match["title"]) for line in _outside_fences(page) if (match := _HEADING.match(line))}


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_links_lead_somewhere(page: Path) -> None:
    for line in _outside_fences(page):
        for link in _LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = link["target"]
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
            if anchor:
                assert anchor in _anchors(linked), f"{page.relative_to(ROOT)}: {target} names no heading"
