"""Self-fencing: an agent's jobs end before the cluster could take its host for lost.

Front ends settle a host's running jobs as lost once its lease lapses, `--host-timeout` after its last renewal;
a client may then start the job again elsewhere. So nothing of those jobs may run by then. After each renewal
the agent writes to the lease file (`lease` in its data directory) until when its jobs may run: the lease's
earliest lapse (the renewal's sending time plus --host-timeout) less the keeper's grace and a margin. Each job's
keeper (supervisor/keepers.py), a process of its own beside the job, reads the file whenever that time comes:
if the agent has renewed meanwhile it waits again, else it ends its job (SIGTERM, the grace, SIGKILL of the
job's whole PID namespace). The guard thus does not depend on the agent: one cut off from Redis, frozen
(SIGSTOP) or starved fences its host all the same, as Kubernetes' node leases and Nomad's
`stop_after_client_disconnect` do.

The file: 16 bytes, the deadline in nanoseconds of CLOCK_BOOTTIME (a clock every process of the host shares,
which counts suspended time and never jumps), then its bitwise complement, so that a keeper reading while the
agent writes (in place: a keeper holds the file open) sees a torn value as such; it re-reads, and counts a
file it cannot read as lapsed.
"""

from __future__ import annotations

import os
from pathlib import Path

from workerctl.runtime.settings import ServerSettings
from workerctl.supervisor.keepers import LEASE

_MARGIN_SECONDS = 1.0


def margin(settings: ServerSettings) -> float:
    """How much sooner than the lease's lapse less the grace a keeper ends its job: for its wake-up and the
    SIGKILL's delivery."""
    return min(_MARGIN_SECONDS, settings.host_timeout / 5)


class LeaseFile:
    """The agent's side of the lease file."""

    def __init__(self, path: Path, settings: ServerSettings) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._window_ns = round((settings.host_timeout - settings.keeper_grace - margin(settings)) * 1e9)

    def renewed(self, sent_ns: int) -> None:
        """The lease was renewed by a request sent at `sent_ns` (keepers.boot_time_ns): the jobs may run until it could
        lapse, less the keeper's grace and the margin."""
        self._write(sent_ns + self._window_ns)

    def lapse(self) -> None:
        """The lease is no longer this agent's: every keeper ends its job now."""
        self._write(0)

    def _write(self, deadline_ns: int) -> None:
        os.pwrite(self._fd, LEASE.pack(deadline_ns, ~deadline_ns), 0)

    def close(self) -> None:
        os.close(self._fd)
