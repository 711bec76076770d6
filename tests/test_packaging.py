"""The sandbox helper as setup.py builds it, for this checkout and into a wheel: statically linked (no dynamic
loader, so LD_PRELOAD and its kin mean nothing to it) and hardened (full RELRO, a stack protector and FORTIFY in
its own code); and a wheel that carries it is tagged for its platform, not py3-none-any. Read with binutils'
readelf and objdump."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from facilities import needs
from workerctl.supervisor.sandbox import HELPER

REPOSITORY = Path(__file__).resolve().parent.parent
SOURCES = HELPER.parent          # the helper's C sources, whose functions are the helper's own code
READELF = shutil.which("readelf")
OBJDUMP = shutil.which("objdump")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox helper is built on Linux only"),
    pytest.mark.slow,  # a wheel built from scratch
]
needs("compiler", None if READELF and OBJDUMP else "no readelf and objdump (binutils; .ci/run installs them)")


def _run(*command: str | Path) -> str:
    return subprocess.run([str(part) for part in command], check=True, capture_output=True, text=True).stdout


def _own_functions(helper: Path) -> set[str]:
    """The functions compiled from the helper's own C files (not libc's): main, and the local functions that
    follow the FILE symbol of one of those files in the symbol table."""
    sources = {path.name for path in SOURCES.glob("*.c")}
    assert sources, f"no C sources beside {HELPER}"
    functions = {"main"}
    in_own_file = False
    for line in _run(READELF, "-sW", helper).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[3] == "FILE":
            in_own_file = fields[7] in sources
        elif len(fields) >= 8 and fields[3] == "FUNC" and in_own_file:
            functions.add(fields[7])
    assert len(functions) > 1, f"{helper} has no symbols of {sorted(sources)} (was it stripped?)"
    return functions


def _calls_from_own_code(helper: Path) -> set[str]:
    """Every function the helper's own functions call (or jump to)."""
    own = _own_functions(helper)
    called: set[str] = set()
    current = None
    for line in _run(OBJDUMP, "-d", "--no-show-raw-insn", helper).splitlines():
        header = re.match(r"[0-9a-f]+ <(.+)>:$", line)
        if header:
            current = header.group(1)
            continue
        target = re.search(r"\b(?:call|jmp)\s+[0-9a-f]+ <([^>+@]+)", line)
        if target and current in own:
            called.add(target.group(1))
    return called


def check_static(helper: Path) -> None:
    headers = _run(READELF, "-hlW", helper)
    assert re.search(r"Type:\s+DYN\b", headers), f"{helper} is not a position-independent executable:\n{headers}"
    assert "INTERP" not in headers, f"{helper} names a dynamic loader: it is not statically linked"
    dynamic = _run(READELF, "-dW", helper)
    assert "(NEEDED)" not in dynamic, f"{helper} needs shared libraries:\n{dynamic}"


def check_full_relro(helper: Path) -> None:
    assert re.search(r"^\s*GNU_RELRO\b", _run(READELF, "-lW", helper), re.MULTILINE), f"{helper} has no RELRO"
    dynamic = _run(READELF, "-dW", helper)
    bind_now = re.search(r"\(FLAGS\)\s.*\bBIND_NOW\b", dynamic) or re.search(r"\(FLAGS_1\)\s.*\bNOW\b", dynamic)
    assert bind_now, f"{helper} is not linked with -z now (its RELRO is partial):\n{dynamic}"


def check_stack_protector(helper: Path) -> None:
    # Static libc brings __stack_chk_fail along whatever the helper was compiled with: what counts is that the
    # helper's own functions call it.
    called = _calls_from_own_code(helper)
    assert "__stack_chk_fail" in called, f"no function of the helper's own checks its stack: {sorted(called)}"


def check_fortify(helper: Path) -> None:
    called = _calls_from_own_code(helper)
    fortified = {name for name in called if re.fullmatch(r"_+\w+_chk", name) and name != "__stack_chk_fail"}
    assert fortified, f"the helper's own code calls no FORTIFY __*_chk function: {sorted(called)}"


CHECKS = [check_static, check_full_relro, check_stack_protector, check_fortify]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (so that its build directory is this test's own), as
    `pip wheel` builds one for a server."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "docs", "bench", HELPER.name))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "out"),
                    str(source)], check=True, capture_output=True, cwd=work)
    [built] = (work / "out").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_helper(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(f"workerctl/supervisor/{HELPER.name}", tmp_path_factory.mktemp("unpacked")))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_checkouts_helper(check) -> None:
    assert HELPER.is_file(), f"the sandbox helper {HELPER} was not built (run pip install -e . again)"
    check(HELPER)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_wheels_helper(check, wheel_helper: Path) -> None:
    check(wheel_helper)


def test_the_wheel_is_a_platform_wheel_carrying_the_helper(wheel: Path) -> None:
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    assert wheel.name.endswith(f"-py3-none-{platform}.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/WHEEL")]
        lines = archive.read(metadata).decode().splitlines()
        helper = archive.getinfo(f"workerctl/supervisor/{HELPER.name}")
    assert "Root-Is-Purelib: false" in lines, lines
    assert f"Tag: py3-none-{platform}" in lines, lines
    assert helper.external_attr >> 16 & 0o111 == 0o111, f"the helper is not executable: {oct(helper.external_attr)}"
