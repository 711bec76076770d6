"""Starting a job's first process.

Every job is `/bin/sh -c COMMAND`, run as the job user in a session of its own, in its home, with umask 077 and
an explicit environment (nothing of the server's leaks in), stdin from /dev/null, and stdout and stderr into
one pipe so their order is kept. What the first process sets up before the command runs (cgroups, namespaces,
the user switch, the seccomp filter) and how the job's environment reaches the command alone are the sandbox's
(see sandbox.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from workerctl.runtime.linux import enlarge_pipe
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import INSTANCE_ENV, JOB_ENV
from workerctl.supervisor.keepers import KeeperPlan, control_pair
from workerctl.supervisor.sandbox import SHELL, JobPlan, Sandbox

_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
_PIPE_BYTES = 1024 * 1024

# The supervisor reaps every child itself (exits.py). A Popen left with no return code would call waitpid on
# its pid when garbage-collected, perhaps after the pid was reused by another job, and steal that job's exit
# status; giving it a return code up front tells it the wait is not its to do.
_WAITED_ELSEWHERE = 0


@dataclass(frozen=True)
class SpawnedProcess:
    pid: int
    output_fd: int  # the read end of the job's stdout+stderr pipe, non-blocking
    control: socket.socket | None  # the control connection to its keeper, if it has one (keepers.py)


def make_private_directory(path: Path, user: JobUser) -> Path:
    """Create a directory only `user` may enter (a job's home or temporary directory)."""
    path.mkdir(mode=0o700)  # new, in a directory of root's: nothing of a job's can stand in its place
    if not user.is_self:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    return path


def job_environment(job_id: str, instance: str, plan: JobPlan, sandbox: Sandbox,
                    temporary: Path | None, given: dict[str, str]) -> dict[str, str]:
    """The job's whole environment; `temporary` is its own temporary directory where it has no /tmp, `given`
    what its start asked for, over the defaults (the protocol keeps the server's WORKERCTL_ names out of it)."""
    home = str(sandbox.home_inside(plan))
    return {
        "PATH": _PATH,
        "HOME": home,
        "PWD": home,
        "TMPDIR": str(temporary or "/tmp"),
        "USER": plan.user.name,
        "LOGNAME": plan.user.name,
        "SHELL": SHELL,
        "LANG": "C.UTF-8",
        **given,
        JOB_ENV: job_id,
        INSTANCE_ENV: instance,
    }


def spawn(plan: JobPlan, sandbox: Sandbox, environment: dict[str, str], network: int | None,
          keeper: KeeperPlan) -> SpawnedProcess:
    """Start the job's first process (in the network namespace open as `network`, if any: see
    Sandbox.network_for), its keeper as `keeper` plans where the sandbox gives jobs one; OSError if it cannot
    be started."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    control = keeper_end = None
    try:
        enlarge_pipe(write_end, _PIPE_BYTES)
        keeper_options: tuple[list[str], tuple[int, ...]] = ([], ())
        if sandbox.keeps_jobs:
            control, keeper_end = control_pair()
            keeper_options = keeper.options(keeper_end.fileno(), read_end)
        # Without a user switch in its arguments Popen spawns with vfork, which costs the same however large
        # the supervisor is: the switch is the first process's to make.
        with sandbox.first_process(plan, environment, network, keeper_options) as first:
            process = subprocess.Popen(first.argv, stdin=subprocess.DEVNULL, stdout=write_end,
                                       stderr=subprocess.STDOUT, cwd=first.directory, env=first.environment,
                                       pass_fds=first.pass_fds, start_new_session=True, umask=0o077)
        process.returncode = _WAITED_ELSEWHERE
    except BaseException:
        os.close(read_end)
        if control is not None:
            control.close()
        raise
    finally:
        os.close(write_end)
        if keeper_end is not None:
            keeper_end.close()
    os.set_blocking(read_end, False)
    if control is not None:
        control.setblocking(False)
    return SpawnedProcess(process.pid, read_end, control)
