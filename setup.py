"""The build step setuptools cannot express in pyproject.toml: compiling the sandbox helper, a small C program
(supervisor/sandbox_helper.c), into the package next to its source.

The helper is the first process of every job and runs as root, so it is linked statically (as a static PIE: no
dynamic loader, so LD_PRELOAD and its kin mean nothing to it) and hardened: stack protector, FORTIFY, PIE, full
RELRO. $CC names the compiler (cc by default); $CFLAGS and $LDFLAGS are added to the command, before the
hardening flags, so that they add to them rather than undo them.

On Linux an install that cannot build the helper fails and says what is missing, as a server run as root refuses
to start without it; WORKERCTL_WITHOUT_SANDBOX_HELPER=1 installs without it. Elsewhere (a laptop installing the
client) the helper is skipped. A wheel that carries the helper is tagged for its platform (py3-none-linux_...):
the helper is a program, not an extension module, so any Python 3 on that platform can use it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Command, Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build import build
from setuptools.errors import CompileError

SOURCE = Path("supervisor") / "sandbox_helper.c"
HELPER = "workerctl-sandbox"
OPT_OUT = "WORKERCTL_WITHOUT_SANDBOX_HELPER"

# -U first: a distribution's own CFLAGS may define _FORTIFY_SOURCE already, and defining it again warns.
COMPILE_FLAGS = ["-fPIE", "-fstack-protector-strong", "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=2"]
LINK_FLAGS = ["-static-pie", "-Wl,-z,relro,-z,now"]

DEBIAN_PACKAGES = "Debian's build-essential, or gcc and libc6-dev"
REFUSAL = f"A server run as root refuses to start without it; set {OPT_OUT}=1 to install without it all the same"


def skip_reason() -> str | None:
    """Why this install builds no helper, in one line; None when it builds one."""
    if not sys.platform.startswith("linux"):
        return "workerctl: the sandbox helper is for Linux servers only; not built here (the client needs none)"
    if os.environ.get(OPT_OUT, "").strip().lower() in ("1", "true", "yes"):
        return (f"workerctl: {OPT_OUT} is set: installing without the sandbox helper; the server will refuse to "
                "run jobs as root")
    return None


class HelperDistribution(Distribution):
    """A distribution that carries a compiled program: its wheels are platform wheels, not py3-none-any
    (bdist_wheel makes Root-Is-Purelib false and installs into platlib when this is true)."""

    def has_ext_modules(self) -> bool:
        return skip_reason() is None


class PlatformWheel(bdist_wheel):
    """Tags a wheel that carries the helper for its platform only: py3-none-PLATFORM, not cp311-cp311-PLATFORM,
    as the helper does not depend on Python's version or ABI."""

    def get_tag(self) -> tuple[str, str, str]:
        python, abi, platform = super().get_tag()
        return ("py3", "none", platform) if not self.root_is_pure else (python, abi, platform)


class BuildSandboxHelper(Command):
    description = "compile the sandbox helper"
    user_options: list[tuple[str, str | None, str]] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def _target(self) -> Path:
        # An editable install runs the package from its folders: the helper goes next to its source there.
        if self.editable_mode:
            return SOURCE.parent / HELPER
        return Path(self.build_lib or "build") / "workerctl" / "supervisor" / HELPER

    def run(self) -> None:
        reason = skip_reason()
        if reason is not None:
            print(reason, file=sys.stderr)
            return
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        compiler = shlex.split(os.environ.get("CC") or "cc")
        cflags = shlex.split(os.environ.get("CFLAGS", ""))
        ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
        # Two steps, so that a failure says which part is missing: the compile needs a C compiler and libc's
        # headers, the static link libc's static library as well (libc.a, which many hosts lack).
        with tempfile.TemporaryDirectory() as scratch:
            object_file = str(Path(scratch) / "sandbox_helper.o")
            self._step([*compiler, "-O2", "-Wall", *cflags, *COMPILE_FLAGS, "-c", "-o", object_file, str(SOURCE)],
                       f"cannot compile the sandbox helper ({SOURCE}; the compiler's messages are above): it "
                       f"needs a C compiler and libc's headers ({DEBIAN_PACKAGES})")
            self._step([*compiler, *cflags, *ldflags, *LINK_FLAGS, "-o", str(target), object_file],
                       "cannot link the sandbox helper statically: it needs libc's static library, libc.a "
                       f"({DEBIAN_PACKAGES}; Fedora's glibc-static)")

    def _step(self, command: list[str], failure: str) -> None:
        try:
            subprocess.run(command, check=True)
            return
        except FileNotFoundError:
            failure = (f"cannot build the sandbox helper ({SOURCE}): no C compiler ({command[0]!r} was not found; "
                       f"set CC to name one, or install {DEBIAN_PACKAGES})")
        except subprocess.CalledProcessError:
            failure += f". The command that failed: {shlex.join(command)}"
        except OSError as error:
            failure = f"cannot build the sandbox helper ({SOURCE}): cannot run the C compiler ({error})"
        raise CompileError(f"{failure}. {REFUSAL}.")

    def get_outputs(self) -> list[str]:
        if self.editable_mode or skip_reason() is not None:
            return []
        return [str(self._target())]

    def get_output_mapping(self) -> dict[str, str]:
        return {}

    def get_source_files(self) -> list[str]:
        return [str(SOURCE)]


build.sub_commands.append(("build_sandbox_helper", None))
setup(distclass=HelperDistribution,
      cmdclass={"build_sandbox_helper": BuildSandboxHelper, "bdist_wheel": PlatformWheel})
