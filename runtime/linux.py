"""The few Linux process controls Python does not expose: child subreaper, parent-death signal, pipe size,
the open-files limit and the OOM score. Each degrades to a logged warning where the kernel refuses."""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import resource
import signal

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process instead of init, so none leaves our sight."""
    try:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        return True
    except OSError as error:
        log.warning("cannot become a child subreaper (%s): a job's double-forked processes may escape "
                    "to init", error)
        return False


def die_with_parent(expected_parent: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Have the kernel send `sig` when our parent dies; if it is already gone, send it now.

    The kernel fires this when the parent *thread* that forked us exits; the serve process forks from its
    main thread, which lives as long as it does.
    """
    _prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)


def enlarge_pipe(fd: int, size: int) -> None:
    """Grow a pipe's buffer so a fast writer needs fewer wake-ups to drain; a refusal only costs speed."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass


SERVER_OOM_SCORE_ADJ = -800
"""The server's processes are among the last the OOM killer picks (-1000 would exempt them altogether)."""
JOB_OOM_SCORE_ADJ = 500
"""A job's processes are among the first: past its limits, a job dies, not the server or the host's services."""


def protect_from_oom_killer() -> None:
    """Make this process, and the processes it starts, unlikely victims of the OOM killer (jobs set their own)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as adjustment:
            adjustment.write(str(SERVER_OOM_SCORE_ADJ))
    except OSError as error:
        log.warning("cannot lower the server's OOM score (%s): the OOM killer may pick it before a job", error)


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit: every running job holds descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def limit_processes_per_user(limit: int) -> None:
    """Let each user started from this process run at most `limit` processes and threads.

    Root, which this process runs as, is exempt from the limit itself; the jobs it starts inherit it and are
    counted by their own user ID, one per workerctl user: a backstop for the pids cgroups, and the only cap
    where there are none.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY and limit > hard:
        log.warning("the processes one user may run are capped at %d here (the hard RLIMIT_NPROC), not %d", hard,
                    limit)
        limit = hard
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
