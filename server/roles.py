"""The functions serve's child processes start with. Each imports its role in its own process only: serve, which
starts them with multiprocessing's "spawn", then loads neither Tornado nor the supervisor's life cycle, and
every test or restart that starts a server pays for each role once, in the process that runs it."""

from __future__ import annotations

from typing import Any


def front_end(*arguments: Any) -> None:
    from workerctl.web.main import run_front_end

    run_front_end(*arguments)


def supervisor(*arguments: Any) -> None:
    from workerctl.supervisor.main import run_supervisor

    run_supervisor(*arguments)
