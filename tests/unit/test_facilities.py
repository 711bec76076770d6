"""A facility the tests need (facilities.py) that is missing skips its tests, except where WORKERCTL_REQUIRE
names it: there they fail, and so does the run. CI requires them all, so nothing it must test can pass as a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from facilities import FACILITIES, REQUIRE_VARIABLE, needs, required

TESTS = Path(__file__).resolve().parent.parent


def test_a_missing_facility_skips_where_nothing_requires_it(monkeypatch):
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no browser here: no Chromium"):
        needs("browser", "no Chromium")


def test_a_missing_facility_fails_where_it_is_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_VARIABLE, "redis,browser")
    with pytest.raises(pytest.fail.Exception, match="browser is required here .* and missing: no Chromium"):
        needs("browser", "no Chromium")
    with pytest.raises(pytest.skip.Exception):
        needs("limits", "no controllers")


def test_a_facility_that_is_there_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setenv(REQUIRE_VARIABLE, "all")
    needs("sandbox", None)


def test_all_requires_every_facility_and_a_misspelt_one_is_refused(monkeypatch):
    monkeypatch.setenv(REQUIRE_VARIABLE, "all")
    assert required() == set(FACILITIES)
    monkeypatch.setenv(REQUIRE_VARIABLE, "sandbox,chromium")
    with pytest.raises(ValueError, match="names chromium, which are not facilities"):
        required()


def _pytest(directory: Path, require: str) -> subprocess.CompletedProcess[str]:
    """A run of pytest of its own in `directory`, with the tests' conftest and WORKERCTL_REQUIRE=`require`."""
    environment = {**os.environ, REQUIRE_VARIABLE: require, "PYTHONPATH": str(TESTS),
                   "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                           "--basetemp", str(directory / "basetemp"), str(directory)],
                          capture_output=True, text=True, timeout=120, cwd=directory, env=environment)


@pytest.mark.slow
def test_a_run_that_requires_a_missing_facility_fails_and_a_misspelt_requirement_stops_it(tmp_path):
    """The whole way, as CI meets it: an exit status of 1 (a failed test) rather than 0 with a skip; and a
    requirement no facility answers to stops the run before any test (a usage error, 4)."""
    (tmp_path / "test_needing.py").write_text(
        "from facilities import needs\n\n\ndef test_it():\n    needs('browser', 'no Chromium (made up)')\n")
    skipped = _pytest(tmp_path, "")
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = _pytest(tmp_path, "all")
    assert failed.returncode == 1 and "1 failed" in failed.stdout, failed.stdout
    assert "browser is required here (WORKERCTL_REQUIRE) and missing: no Chromium (made up)" in failed.stdout
    misspelt = _pytest(tmp_path, "chromium")
    assert misspelt.returncode == 4 and "names chromium, which are not facilities" in misspelt.stderr, misspelt


def test_ci_requires_every_facility_when_it_runs_as_root():
    script = (TESTS.parent / ".ci" / "run").read_text()
    assert f'if [ "$(id -u)" = 0 ]; then export {REQUIRE_VARIABLE}=all; fi' in script
