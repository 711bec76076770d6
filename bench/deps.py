"""Installing what the benchmark needs, so one command works on a fresh machine.

The `bench` extra (matplotlib, supervisor) goes into whatever Python runs the benchmark; task-spooler comes from
the distribution's packages, as PyPI does not have it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def ensure_dependencies() -> None:
    """Install the `bench` extra and task-spooler unless they are already here; RuntimeError if that fails."""
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e",
          f"{REPOSITORY}[bench]"], "installing the bench extra with pip")
    if shutil.which("tsp") is None:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        _run([*sudo, "apt-get", "update", "-qq"], "updating the package lists")
        _run([*sudo, "apt-get", "install", "-y", "-qq", "task-spooler"], "installing task-spooler")


def _run(command: list[str], what: str) -> None:
    print(f"bench: {what}", file=sys.stderr)
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit status {done.returncode}): {done.stderr.strip()[-500:]}")
