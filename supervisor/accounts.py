"""The accounts jobs run as.

Under root the default is `dynamic`: every running job gets a user and group ID of its own, from a range no
real account uses, with no supplementary groups. Jobs then cannot signal, trace or read the files of any other
job, whoever's it is: the kernel keeps them apart as it keeps two users apart. Each server on a host claims a
block of IDs of its own (a lock file per block under /run/workerctl, held while it runs), so two servers never
hand out the same ID nor take each other's jobs for strays. IDs are handed out in turn through the block, so
one is not used again until tens of thousands of jobs later. A named account (`--job-user NAME`) runs every
job as that account instead; a server that is not root runs jobs as itself.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import random
from dataclasses import dataclass
from pathlib import Path

DYNAMIC = "dynamic"
FIRST_DYNAMIC_ID = 2_100_000_000
BLOCK_IDS = 65_536  # the IDs one server hands out
BLOCKS = 16_384  # the last block ends below 2^32 - 1, which means "no ID"
BLOCK_LOCKS = Path("/run/workerctl/id-blocks")
NO_IDS = range(0)


def claim_id_block(directory: Path = BLOCK_LOCKS) -> tuple[range, int]:
    """The first block of job user IDs no other server on this host holds, and the descriptor of its lock
    (keep it open for as long as jobs may run with those IDs); OSError if none can be claimed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for block in range(BLOCKS):
        fd = os.open(directory / f"{block}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        first = FIRST_DYNAMIC_ID + block * BLOCK_IDS
        return range(first, first + BLOCK_IDS), fd
    raise OSError(f"every block of job user IDs is held by another server (see {directory})")


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


class JobAccounts:
    def __init__(self, fixed: JobUser | None, ids: range = NO_IDS) -> None:
        self.fixed = fixed
        self.ids = ids  # the block of IDs handed out to jobs, where each gets its own
        self._in_use: set[int] = set()
        self._next = random.randrange(len(ids)) if ids else 0  # a restart does not start over on the same IDs

    @property
    def dynamic(self) -> bool:
        return self.fixed is None

    @classmethod
    def resolve(cls, setting: str | None, ids: range = NO_IDS) -> JobAccounts:
        """The accounts for `--job-user`, handing out `ids` where each job gets its own; ValueError with one
        sentence if it cannot be used."""
        if setting is None:
            setting = DYNAMIC if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if setting == DYNAMIC:
            if os.geteuid() != 0:
                raise ValueError("job-user \"dynamic\" needs the server to run as root")
            return cls(None, ids)
        try:
            entry = pwd.getpwnam(setting)
        except KeyError:
            raise ValueError(f"there is no user named {setting!r} to run jobs as") from None
        if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise ValueError(f"running jobs as {setting!r} needs the server to run as root or as {setting!r}")
        return cls(JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid))

    def describe(self) -> str:
        if self.fixed is not None:
            return self.fixed.name
        return f"a user of their own (IDs {self.ids.start} to {self.ids.stop - 1})"

    def acquire(self) -> JobUser:
        """The account for a job about to start; hand it back with `release` once the job has ended."""
        if self.fixed is not None:
            return self.fixed
        if len(self._in_use) >= len(self.ids):
            raise OSError("every job user ID of this server is in use")
        while self.ids[self._next] in self._in_use:
            self._next = (self._next + 1) % len(self.ids)
        number = self.ids[self._next]
        self._next = (self._next + 1) % len(self.ids)
        self._in_use.add(number)
        return JobUser(f"job-{number}", number, number)

    def own_uid(self, user: JobUser | None) -> int | None:
        """The user ID that is this job's alone, if it has one."""
        return user.uid if user is not None and self.fixed is None else None

    def release(self, user: JobUser) -> None:
        self._in_use.discard(user.uid)
