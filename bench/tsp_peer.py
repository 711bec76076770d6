"""task-spooler (`tsp`) as a peer: a private queue server with its own socket and output directory.

`tsp -f CMD` submits a job and waits for it in the foreground, `tsp -s ID` prints a job's state. Jobs run as
`/bin/sh -c COMMAND`, the same shell workerctl runs, as the user that submits them (root here: task-spooler
has no way to run them as another user).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.load import Operation, OperationFactory

_CALL_SECONDS = 60.0


class TaskSpooler:
    def __init__(self, directory: Path, slots: int) -> None:
        self.directory = directory
        self.slots = slots
        (directory / "output").mkdir(parents=True, exist_ok=True)
        self.environment = {**os.environ, "TS_SOCKET": str(directory / "socket"),
                            "TMPDIR": str(directory / "output"), "TS_MAXFINISHED": "1000"}

    def __enter__(self) -> TaskSpooler:
        self.call("-S", str(self.slots))  # starts the server too
        return self

    def __exit__(self, *_: object) -> None:
        subprocess.run(["tsp", "-K"], env=self.environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=_CALL_SECONDS, check=False)

    def call(self, *arguments: str) -> str:
        done = subprocess.run(["tsp", *arguments], env=self.environment, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=_CALL_SECONDS, check=True)
        return done.stdout

    def run_to_end(self, command: str) -> str:
        """Submit `command` and wait until it ends (`tsp -f`); its job ID."""
        return self.call("-f", "/bin/sh", "-c", command).strip()

    def run_operation(self, command: str) -> OperationFactory:
        def factory(_index: int) -> Operation:
            def submit_and_wait() -> None:
                self.run_to_end(command)
            return submit_and_wait
        return factory
