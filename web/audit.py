"""The audit log: one JSON line per request that acts (start, stop) or is refused, with when, who (or "-"),
from where, what, on which job and the HTTP status; never a token nor a command.

The front end is its one writer; each line is one append. When the file is moved away (logrotate's default
`create` mode), the next line goes to a new file at the same path.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

ACTING = frozenset({"start", "stop"})


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._inode: tuple[int, int] | None = None
        self._open()  # OSError now, with one sentence at start-up, rather than at the first request

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        status = os.fstat(fd)
        self._inode = (status.st_dev, status.st_ino)

    def _moved_away(self) -> bool:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._inode

    def record(self, user: str | None, client: str, action: str | None, job_id: str | None, status: int) -> None:
        """Write the line of one request, if it acts or was refused."""
        if action not in ACTING and status < 400:
            return
        line = json.dumps({
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user": user or "-", "client": client, "action": action or "-", "jobID": job_id, "status": status,
        }, ensure_ascii=False) + "\n"
        try:
            if self._moved_away():
                self._open()
            os.write(self._fd, line.encode())
        except OSError as error:
            log.error("cannot write to the audit log %s: %s", self.path, error)
