"""Starting a job's first process.

Every job is `/bin/sh -c COMMAND`, run as the job user in a session of its own, in a private working directory
with umask 077 and an explicit environment (nothing of the server's leaks in), stdin from /dev/null, and stdout
and stderr into one pipe so their order is kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workerctl.server.linux import enlarge_pipe
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import INSTANCE_ENV, JOB_ENV, Containment

SHELL = "/bin/sh"
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
_PIPE_BYTES = 1024 * 1024

# The supervisor reaps every child itself (Supervisor._reap). A Popen left with no return code would call waitpid
# on its pid when garbage-collected, perhaps after the pid was reused by another job, and steal that job's exit
# status; giving it a return code up front tells it the wait is not its to do.
_WAITED_ELSEWHERE = 0


@dataclass(frozen=True)
class SpawnedProcess:
    pid: int
    output_fd: int  # the read end of the job's stdout+stderr pipe, non-blocking


def make_workdir(workdir: Path, user: JobUser) -> Path:
    """Create a job's private working directory, owned by its user."""
    workdir.mkdir(mode=0o700)
    if not user.is_self:
        os.chown(workdir, user.uid, user.gid)
    return workdir


def job_environment(job_id: str, instance: str, user: JobUser, workdir: Path) -> dict[str, str]:
    return {
        "PATH": _PATH,
        "HOME": str(workdir),
        "PWD": str(workdir),
        "TMPDIR": str(workdir),
        "USER": user.name,
        "LOGNAME": user.name,
        "SHELL": SHELL,
        "LANG": "C.UTF-8",
        JOB_ENV: job_id,
        INSTANCE_ENV: instance,
    }


def _as_user(user: JobUser, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The command line and Popen arguments that run `argv` as `user`.

    Popen can switch users itself, but then it must fork the whole supervisor; without a switch it uses
    vfork, which costs the same however large the supervisor is. Letting util-linux's setpriv switch users
    after a vfork costs one small exec and saves about a millisecond per job.
    """
    if user.is_self:
        return argv, {}
    if SETPRIV is None:
        return argv, {"user": user.uid, "group": user.gid, "extra_groups": []}
    return [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv], {}


def spawn(command: str, job_id: str, user: JobUser, workdir: Path, containment: Containment) -> SpawnedProcess:
    """Start the job's shell; OSError if it cannot be started."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        enlarge_pipe(write_end, _PIPE_BYTES)
        argv, switch_user = _as_user(user, [SHELL, "-c", command])
        with containment.spawning(job_id, argv) as argv:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=job_environment(job_id, containment.instance, user, workdir),
                start_new_session=True,
                umask=0o077,
                **switch_user,
            )
        process.returncode = _WAITED_ELSEWHERE
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    os.set_blocking(read_end, False)
    return SpawnedProcess(process.pid, read_end)
