"""What some tests need of the machine, and the one rule for when it is missing: the test skips, unless
WORKERCTL_REQUIRE names the facility (or says `all`), and then it fails. CI sets `WORKERCTL_REQUIRE=all`
(.ci/run), so that a regression that takes a facility away there cannot pass as a row of skips."""

from __future__ import annotations

import importlib.util
import os

import pytest

REQUIRE_VARIABLE = "WORKERCTL_REQUIRE"

FACILITIES = {
    "root": "running as root: the privileged path, mounts",
    "sandbox": "the sandbox helper and the kernel's namespaces for jobs",
    "cgroups": "a writable cgroup hierarchy, for one cgroup per job",
    "limits": "cgroup controllers for memory, CPU and process limits",
    "browser": "Debian's Chromium and certutil, and playwright",
    "redis": "Debian's redis-server and the redis package",
    "cluster": "celery, the cluster's extra",
    "compiler": "a C compiler and binutils (Debian's build-essential)",
}


def required() -> frozenset[str]:
    """The facilities WORKERCTL_REQUIRE names: a comma-separated list of FACILITIES, or `all`. ValueError for a
    name that is not one, so that a misspelt requirement cannot quietly require nothing."""
    names = {name.strip() for name in os.environ.get(REQUIRE_VARIABLE, "").split(",") if name.strip()}
    if names == {"all"}:
        return frozenset(FACILITIES)
    unknown = sorted(names - set(FACILITIES))
    if unknown:
        raise ValueError(f"{REQUIRE_VARIABLE} names {', '.join(unknown)}, which are not facilities the tests know: "
                         f"give `all` or some of {', '.join(FACILITIES)}")
    return frozenset(names)


def needs(facility: str, problem: str | None) -> None:
    """Go on if `problem` is None (the facility is here); else skip the test (or the module, called at its top
    level), or fail it where the facility is required."""
    assert facility in FACILITIES, facility
    if problem is None:
        return
    if facility in required():
        pytest.fail(f"{facility} is required here ({REQUIRE_VARIABLE}) and missing: {problem}", pytrace=False)
    pytest.skip(f"no {facility} here: {problem}", allow_module_level=True)


def missing_module(name: str, install: str) -> str | None:
    """Why the Python package `name` cannot be imported (`install` says how to get it), or None."""
    return None if importlib.util.find_spec(name) is not None else f"the {name} package is not installed ({install})"
