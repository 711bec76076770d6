"""`workerctl completion bash|zsh|fish`: scripts that parse, and that complete what the command table says.

bash is always here, so its script is sourced and its function called as bash calls it, with COMP_WORDS and
COMP_CWORD set. zsh and fish are checked where they are installed, and skipped where not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workerctl.protocol.jobs import JobStatus
from workerctl.runtime.settings import LOG_LEVELS


def completion_script(shell: str, directory: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "workerctl", "completion", shell], capture_output=True, text=True,
                            timeout=60, env={"PATH": os.environ["PATH"], "HOME": str(directory)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    path = directory / f"workerctl.{shell}"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return completion_script("bash", tmp_path_factory.mktemp("bash"))


def bash_completes(script: Path, *words: str) -> list[str]:
    """What the script offers for the command line `words`, the last of them the word at the cursor."""
    program = f"""
        source {script}
        COMP_WORDS=({' '.join(f"'{word}'" for word in words)})
        COMP_CWORD={len(words) - 1}
        _workerctl
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_the_bash_script_parses(bash_script):
    result = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("words, offered", [
    (("workerctl", "st"), ["start", "status", "stop"]),
    (("workerctl", "l"), ["logs", "list"]),
    (("workerctl", "u"), ["users"]),
    (("workerctl", "users", "r"), ["rotate", "remove"]),
    (("workerctl", "certs", "r"), ["renew"]),
    (("workerctl", "list", "--st"), ["--status"]),
    (("workerctl", "logs", "-"), None),  # checked below: -f and --follow among the rest
    (("workerctl", "list", "--status", ""), [status.value for status in JobStatus]),
    (("workerctl", "list", "--status", "=", "fi"), ["finished"]),  # --status=fi, as bash splits it
    (("workerctl", "serve", "--log-level", ""), list(LOG_LEVELS)),
    (("workerctl", "serve", "--sandbox", "o"), ["on", "off"]),
    (("workerctl", "completion", ""), ["bash", "zsh", "fish"]),
    (("workerctl", "--server", "https://h:1", "status", "--js"), ["--json"]),  # options before the command
    (("workerctl", "users", "add", "bob", "--e"), ["--expires"]),
    (("workerctl", "start", "--timeout", ""), []),  # a number to type
    (("workerctl", "status", "x", "--retry", "5", "--j"), ["--json"]),
])
def test_bash_completes_from_the_command_table(bash_script, words, offered):
    got = bash_completes(bash_script, *words)
    if offered is None:
        assert {"-f", "--follow", "--tail", "--json", "--help"} <= set(got), got
    else:
        assert got == offered


def test_bash_completes_files_where_an_option_names_one(bash_script, tmp_path):
    (tmp_path / "ca.pem").write_text("")
    assert bash_completes(bash_script, "workerctl", "status", "x", "--ca", str(tmp_path / "c")) == \
        [str(tmp_path / "ca.pem")]
    assert bash_completes(bash_script, "workerctl", "start", "--", "cat", str(tmp_path / "c")) == \
        [str(tmp_path / "ca.pem")]  # after --, the job's own words


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_the_zsh_script_parses(tmp_path):
    result = subprocess.run(["zsh", "-n", str(completion_script("zsh", tmp_path))], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_the_fish_script_parses_and_completes(tmp_path):
    script = completion_script("fish", tmp_path)
    assert subprocess.run(["fish", "-n", str(script)], capture_output=True, timeout=60).returncode == 0

    def offered(line: str) -> list[str]:
        result = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return sorted(line.split("\t")[0] for line in result.stdout.splitlines())

    assert offered("workerctl st") == ["start", "status", "stop"]
    assert offered("workerctl users ") == ["add", "list", "remove", "rotate"]
    assert offered("workerctl list --st") == ["--status"]
    assert offered("workerctl list --status ") == sorted(status.value for status in JobStatus)
