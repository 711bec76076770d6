"""The build step setuptools cannot express in pyproject.toml: compiling the sandbox helper, a small C program
(supervisor/sandbox_helper.c), into the package next to its source. Without a C compiler the install goes on
without it, and the server says so and runs jobs without namespaces."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build

SOURCE = Path("supervisor") / "sandbox_helper.c"
HELPER = "workerctl-sandbox"


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
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        command = [*shlex.split(os.environ.get("CC", "cc")), "-O2", "-Wall", "-o", str(target), str(SOURCE)]
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"warning: cannot compile the sandbox helper ({error}); the server will run jobs without "
                  "namespaces", file=sys.stderr)

    def get_outputs(self) -> list[str]:
        return [] if self.editable_mode else [str(self._target())]

    def get_output_mapping(self) -> dict[str, str]:
        return {}

    def get_source_files(self) -> list[str]:
        return [str(SOURCE)]


build.sub_commands.append(("build_sandbox_helper", None))
setup(cmdclass={"build_sandbox_helper": BuildSandboxHelper})
