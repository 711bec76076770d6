"""The boundaries between the layers, as pyproject.toml's import-linter contracts state them, checked against a
regular install (grimp cannot see the folders package-dir maps into `workerctl` in an editable one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a regular install of the package, for import-linter

REPOSITORY = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold(tmp_path: Path) -> None:
    # A copy, so that the build's own directory is this test's, not the checkout's (two runs may overlap).
    source = tmp_path / "source"
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "docs", "bench"))
    install = tmp_path / "install"
    # Without the sandbox helper: a C program is nothing import-linter reads, and building it is most of the cost.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(install),
                    str(source)], check=True, capture_output=True, cwd=tmp_path,
                   env={**os.environ, "WORKERCTL_WITHOUT_SANDBOX_HELPER": "1"})
    result = subprocess.run([Path(sys.executable).with_name("lint-imports"), str(REPOSITORY / "pyproject.toml")],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(install)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_client_module_is_bound_by_the_client_contract() -> None:
    """A module added to client/ is client code, so it must be one the client contract covers (the one
    exception is __main__, which puts the client's and the server's commands together)."""
    contracts = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    client_contract = next(c for c in contracts if c["name"] == "The client side imports no server code")
    covered = set(client_contract["source_modules"])
    client = REPOSITORY / "client"
    top_level = {f"workerctl.{path.stem}" for path in client.glob("*.py")} | \
                {f"workerctl.{path.parent.name}" for path in client.glob("*/__init__.py")}
    assert top_level - covered == {"workerctl.__init__", "workerctl.__main__"}
