"""The accounts jobs run as.

Under root the default is `dynamic`: each workerctl user's jobs run as a user and group ID that is that user's
own, with no supplementary groups, so the kernel keeps one user's jobs and files from another's. A user keeps
their ID across jobs and restarts (the data directory records who has which), so their home stays theirs.
The IDs come from a block that no real account uses and that is this server's alone on the host: a registry,
one file per block naming the data directory that holds it (and locked while its server runs), keeps two
servers from ever handing out the same ID or taking each other's processes for strays. One user's jobs are
kept apart from each other by their namespaces and cgroups, not by IDs.

A named account (`--job-user NAME`) runs every job as that account instead; a server that is not root runs
jobs as itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from workerctl.store.atomic_write import write_atomically
from workerctl.store.layout import DataDirError, DataLayout

DYNAMIC = "dynamic"
FIRST_DYNAMIC_ID = 2_100_000_000
BLOCK_IDS = 65_536  # the IDs one server hands out: one per workerctl user
BLOCKS = 16_384  # the last block ends below 2^32 - 1, which means "no ID"
ID_REGISTRY = Path("/var/lib/workerctl-id-blocks")
NO_IDS = range(0)


def _block_ids(block: int) -> range:
    first = FIRST_DYNAMIC_ID + block * BLOCK_IDS
    return range(first, first + BLOCK_IDS)


def _holder(entry: Path) -> str | None:
    """The data directory a registry entry names; None for an entry no one has written yet."""
    try:
        return entry.read_text().strip() or None
    except FileNotFoundError:
        return None


def _recorded_block(data_dir: Path) -> int | None:
    try:
        return int(DataLayout(data_dir).id_block.read_text())
    except (OSError, ValueError):
        return None


def claim_id_block(layout: DataLayout, registry: Path = ID_REGISTRY) -> tuple[range, int]:
    """This server's block of job user IDs, and the descriptor of the registry entry's lock (keep it open while
    jobs may run): the block its data directory recorded, else the first no other data directory holds.
    DataDirError if the recorded block is now another's, or none is free."""
    registry.mkdir(mode=0o700, parents=True, exist_ok=True)
    me = str(layout.root.resolve())
    recorded = _recorded_block(layout.root)
    for block in ([recorded] if recorded is not None else range(BLOCKS)):
        entry = registry / str(block)
        holder = _holder(entry)
        # A holder whose data directory is gone, or records another block, left it: it is free again.
        if holder not in (None, me) and _recorded_block(Path(holder)) == block:
            if recorded is not None:
                raise DataDirError(f"the job user IDs of {me} (block {block}) are now held by {holder}")
            continue
        fd = os.open(entry, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another server is claiming it right now
            os.close(fd)
            continue
        if _holder(entry) not in (holder, me):  # taken while we looked
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{me}\n".encode())
        write_atomically(layout.id_block, f"{block}\n".encode())
        return _block_ids(block), fd
    raise DataDirError(f"every block of job user IDs is held by another data directory (see {registry})")


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


class JobAccounts:
    def __init__(self, fixed: JobUser | None, ids: range = NO_IDS, mapping: Path | None = None) -> None:
        self.fixed = fixed
        self.ids = ids  # the block of IDs handed out, one per workerctl user
        self.mapping = mapping  # where who has which is kept
        self._indexes: dict[str, int] = json.loads(mapping.read_text()) if mapping and mapping.exists() else {}

    @property
    def dynamic(self) -> bool:
        return self.fixed is None

    @classmethod
    def resolve(cls, setting: str | None, ids: range = NO_IDS, mapping: Path | None = None) -> JobAccounts:
        """The accounts for `--job-user`, handing out `ids` (one per workerctl user, recorded in `mapping`)
        where each user gets their own; ValueError with one sentence if it cannot be used."""
        if setting is None:
            setting = DYNAMIC if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if setting == DYNAMIC:
            if os.geteuid() != 0:
                raise ValueError("job-user \"dynamic\" needs the server to run as root")
            return cls(None, ids, mapping)
        try:
            entry = pwd.getpwnam(setting)
        except KeyError:
            raise ValueError(f"there is no user named {setting!r} to run jobs as") from None
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise ValueError(f"jobs must not run as {setting!r}: its user or group ID is 0, root's")
        if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise ValueError(f"running jobs as {setting!r} needs the server to run as root or as {setting!r}")
        return cls(JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid))

    def describe(self) -> str:
        if self.fixed is not None:
            return self.fixed.name
        return f"a user of their own (IDs {self.ids.start} to {self.ids.stop - 1})"

    def user_for(self, owner: str) -> JobUser:
        """The account `owner`'s jobs run as: the same for every job of theirs, now and after a restart.
        OSError if a new user cannot be given an ID."""
        if self.fixed is not None:
            return self.fixed
        index = self._indexes.get(owner)
        if index is None:
            index = len(self._indexes)
            if index >= len(self.ids):
                raise OSError(f"all {len(self.ids)} job user IDs of this server are given out")
            assert self.mapping is not None
            write_atomically(self.mapping, json.dumps({**self._indexes, owner: index}, indent=1).encode())
            self._indexes[owner] = index
        uid = self.ids[index]
        return JobUser(owner, uid, uid)

    def uids_of(self, owners: set[str]) -> set[int]:
        """The IDs of these users' jobs, where each user has their own."""
        if self.fixed is not None:
            return set()
        return {self.ids[self._indexes[owner]] for owner in owners if owner in self._indexes}
