"""How a job's first process is made: the sandbox helper, or a fallback chain of standard tools.

The helper (`workerctl-sandbox`, compiled from sandbox_helper.c when the package is installed) joins the job's
cgroups, gives it namespaces of its own where the sandbox is on, and switches to the job's user, all in one
exec. Where it is missing, the job's first process is a two-line shell that joins the cgroups, then
util-linux's setpriv switches users: the same job without namespaces, one or two execs slower.

With the sandbox on, a job sees only its own processes (PID namespace), has private /tmp, /var/tmp and
/dev/shm (tmpfs, charged to its memory cgroup) that vanish with it, its own SysV IPC and host name, a
read-only view of the rest of the system in which the data directory, the server's key and the users file do
not appear, its home at /home/USER, and with `--network none` only a loopback of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from workerctl.server.linux import JOB_OOM_SCORE_ADJ
from workerctl.server.settings import ServerSettings
from workerctl.supervisor.accounts import JobUser

log = logging.getLogger(__name__)

HELPER = Path(__file__).resolve().with_name("workerctl-sandbox")
SHELL = "/bin/sh"
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
SANDBOX_CHOICES = ("auto", "on", "off")
NETWORK_CHOICES = ("none", "host")
PRIVATE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
HOMES_INSIDE = Path("/home")

# Sets the OOM score adjustment at $1 to $2, joins the cgroups named after it up to "--", then becomes the rest
# of the command line: the fallback when the helper is missing. It runs as root, before anything of the job, so
# the job is a member before it can fork.
_JOIN_THEN_EXEC = ('echo "$2" > "$1"; shift 2; while [ "$1" != -- ]; do echo 0 > "$1" || { '
                   'echo "workerctl: the job cannot join its cgroup" >&2; exit 125; }; shift; done; shift; exec "$@"')
_PROBE_SECONDS = 10.0


class SandboxUnavailable(Exception):
    """The sandbox was asked for and cannot be had here; the message says why in one sentence."""


@dataclass(frozen=True)
class JobPlan:
    """What a job's first process must set up before the job's own command runs."""

    command: str
    owner: str  # the workerctl user
    user: JobUser  # the account it runs as
    home: Path  # its home on the host
    cgroups: tuple[Path, ...]  # the cgroup.procs files it joins


class Sandbox:
    def __init__(self, namespaces: bool, network: str, hidden: tuple[Path, ...]) -> None:
        self.namespaces = namespaces
        self.isolated_network = namespaces and network == "none"
        self.hidden = hidden
        self.helper = HELPER if os.access(HELPER, os.X_OK) else None

    @classmethod
    def choose(cls, sandbox: str, network: str, hidden: tuple[Path, ...]) -> Sandbox:
        """The sandbox for the settings: on where the kernel allows with "auto"; SandboxUnavailable for "on"
        where it does not. Logs what is in force."""
        if sandbox == "off":
            chosen = cls(False, network, hidden)
        else:
            problem = namespaces_problem(network)
            if problem is not None and sandbox == "on":
                raise SandboxUnavailable(unavailable(problem))
            if problem is not None:
                log.warning("sandbox: off, as %s; jobs see the host's processes, /tmp and network", problem)
            chosen = cls(problem is None, network, hidden)
        if chosen.namespaces:
            log.info("sandbox: on: namespaces for processes, mounts, IPC and host name, network %s",
                     "none (a loopback of its own)" if chosen.isolated_network else "the host's")
        elif sandbox == "off":
            log.info("sandbox: off: jobs see the host's processes, /tmp and network")
        return chosen

    def home_inside(self, plan: JobPlan) -> Path:
        """Where the job finds its home."""
        return HOMES_INSIDE / plan.owner if self.namespaces else plan.home

    def argv(self, plan: JobPlan) -> list[str]:
        """The command line of the job's first process."""
        job = [SHELL, "-c", plan.command]
        if self.helper is None:
            return self._fallback(plan, job)
        argv = [str(self.helper), "-a", str(JOB_OOM_SCORE_ADJ)]
        for cgroup in plan.cgroups:
            argv += ["-j", str(cgroup)]
        if self.namespaces:
            argv += ["-n", "-o", "workerctl-job", "-r"]
            if self.isolated_network:
                argv.append("-N")
            for path in (*self.hidden, HOMES_INSIDE):
                argv += ["-H", str(path)]
            argv += ["-b", f"{plan.home}:{self.home_inside(plan)}"]
            for path in PRIVATE_TMPFS:
                argv += ["-t", path]
        if not plan.user.is_self:
            argv += ["-u", str(plan.user.uid), "-g", str(plan.user.gid)]
        return [*argv, "-d", str(self.home_inside(plan)), "--", *job]

    @staticmethod
    def _fallback(plan: JobPlan, job: list[str]) -> list[str]:
        if not plan.user.is_self:
            if SETPRIV is None:
                raise OSError("neither the sandbox helper nor util-linux's setpriv is installed to switch users")
            job = [SETPRIV, f"--reuid={plan.user.uid}", f"--regid={plan.user.gid}", "--clear-groups", "--", *job]
        return [SHELL, "-c", _JOIN_THEN_EXEC, SHELL, "/proc/self/oom_score_adj", str(JOB_OOM_SCORE_ADJ),
                *map(str, plan.cgroups), "--", *job]


def unavailable(problem: str) -> str:
    return f"sandbox \"on\" needs namespaces, and {problem}"


def hidden_from_jobs(settings: ServerSettings) -> tuple[Path, ...]:
    """What a sandboxed job must not see: the data directory, the server's key and the users file."""
    return (settings.data_dir, settings.key, settings.users)


def namespaces_problem(network: str) -> str | None:
    """Why this server cannot give jobs namespaces, in words; None if it can (it tries, once)."""
    if os.geteuid() != 0:
        return "the server does not run as root"
    if not os.access(HELPER, os.X_OK):
        return f"the sandbox helper {HELPER} was not built (it needs a C compiler when workerctl is installed)"
    probe = [str(HELPER), "-n", *(["-N"] if network == "none" else []), "--", "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=_PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the sandbox helper cannot run ({error})"
    if done.returncode != 0:
        return f"this kernel refuses them ({done.stderr.strip() or f'exit status {done.returncode}'})"
    return None
