"""The accounts jobs run as.

Under root the default is `dynamic`: every running job gets a user and group ID of its own, from a range no
real account uses, with no supplementary groups. Jobs then cannot signal, trace or read the files of any other
job, whoever's it is: the kernel keeps them apart as it keeps two users apart. IDs are handed out in turn
through the whole range, so one is not used again until tens of thousands of jobs later. A named account
(`--job-user NAME`) runs every job as that account instead; a server that is not root runs jobs as itself.
"""

from __future__ import annotations

import os
import pwd
import random
from dataclasses import dataclass

DYNAMIC = "dynamic"
FIRST_DYNAMIC_ID = 2_100_000_000
DYNAMIC_IDS = 65_536
DYNAMIC_ID_RANGE = range(FIRST_DYNAMIC_ID, FIRST_DYNAMIC_ID + DYNAMIC_IDS)


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


class JobAccounts:
    def __init__(self, fixed: JobUser | None) -> None:
        self.fixed = fixed
        self._in_use: set[int] = set()
        self._next = random.randrange(DYNAMIC_IDS)  # a restart does not start over on the same IDs

    @classmethod
    def resolve(cls, setting: str | None) -> JobAccounts:
        """The accounts for `--job-user`; ValueError with one sentence if it cannot be used."""
        if setting is None:
            setting = DYNAMIC if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if setting == DYNAMIC:
            if os.geteuid() != 0:
                raise ValueError("job-user \"dynamic\" needs the server to run as root")
            return cls(None)
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
        return f"a user of their own (IDs {FIRST_DYNAMIC_ID} to {FIRST_DYNAMIC_ID + DYNAMIC_IDS - 1})"

    def acquire(self) -> JobUser:
        """The account for a job about to start; hand it back with `release` once the job has ended."""
        if self.fixed is not None:
            return self.fixed
        if len(self._in_use) >= DYNAMIC_IDS:
            raise OSError("every dynamic job user ID is in use")
        while (FIRST_DYNAMIC_ID + self._next) in self._in_use:
            self._next = (self._next + 1) % DYNAMIC_IDS
        number = FIRST_DYNAMIC_ID + self._next
        self._next = (self._next + 1) % DYNAMIC_IDS
        self._in_use.add(number)
        return JobUser(f"job-{number}", number, number)

    def own_uid(self, user: JobUser | None) -> int | None:
        """The user ID that is this job's alone, if it has one."""
        return user.uid if user is not None and self.fixed is None else None

    def release(self, user: JobUser) -> None:
        self._in_use.discard(user.uid)
