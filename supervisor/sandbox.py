"""How a job's first process is made: the sandbox helper, the one program that runs with privileges for a job.

The helper (`workerctl-sandbox`, compiled statically from sandbox_helper.c when the package is installed) joins
the job's cgroups, gives it namespaces and a root of its own where the sandbox is on, drops every privilege,
switches to the job's user, installs the seccomp filter (seccomp.py) and runs the job, all in one exec. Nothing
a request carries reaches it as anything but data: it starts with a fixed environment and "/" as its working
directory, and reads its options, the job's variables among them, from a memory file, so that none of them is
in an environment the helper itself runs with, nor in a command line a job can read (/proc/1/cmdline in its PID
namespace). The job's variables take effect only in the job's own execve, after the switch of user.

As root the helper is required, sandbox or not: there is no safe way to start a job as another user without it.
A server that is not root (a developer's laptop) runs jobs as itself, with no privileges to guard; without the
helper its job's first process is a two-line shell that joins the cgroups it can and runs the job.

With the sandbox on, a job sees only its own processes (PID namespace) and its own cgroup (cgroup namespace);
its root is read-only and holds only the system paths (SYSTEM_PATHS, without the server's data directory, key,
users file and audit log where those lie inside them), a /dev of harmless devices, its own /proc, private /tmp,
/var/tmp and /dev/shm (tmpfs, charged to its memory cgroup) that vanish with it, and its home at /home/USER. It
has its own SysV IPC and host name, and with `--network none` only a loopback of its own.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workerctl.runtime.linux import JOB_OOM_SCORE_ADJ
from workerctl.runtime.settings import ServerSettings
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import INSTANCE_ENV, JOB_ENV
from workerctl.supervisor.networks import NetworkNamespaces
from workerctl.supervisor.seccomp import SeccompUnavailable, job_filter

log = logging.getLogger(__name__)

HELPER = Path(__file__).resolve().with_name("workerctl-sandbox")
SHELL = "/bin/sh"
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
PRIVATE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
HOMES_INSIDE = Path("/home")
PROBE_ID = 65534  # "nobody": the start-up probe's job runs as it
# The helper's own environment: the tags that find a job's processes (containment.py), and nothing else.
_HELPER_ENVIRONMENT = (JOB_ENV, INSTANCE_ENV)

# Sets the OOM score adjustment at $1 to $2, joins the cgroups named after it up to "--", then becomes the rest
# of the command line: a server that is not root, without the helper. It runs as the server's own user.
_JOIN_THEN_EXEC = ('echo "$2" > "$1"; shift 2; while [ "$1" != -- ]; do echo 0 > "$1" || { '
                   'echo "workerctl: the job cannot join its cgroup" >&2; exit 125; }; shift; done; shift; exec "$@"')
_PROBE_SECONDS = 10.0
_NETWORKS_AHEAD = 8  # network namespaces made ahead of jobs; in a longer burst the helper makes its own
# Those of ended jobs kept for their users' next: 16 a user, 64 in all (some 10 MiB of the kernel's memory).
_NETWORKS_KEPT_PER_USER = 16
_NETWORKS_KEPT = 64


class SandboxUnavailable(Exception):
    """The sandbox is needed and cannot be had here; the message says why and what to do in one sentence."""


@dataclass(frozen=True)
class JobPlan:
    """What a job's first process must set up before the job's own command runs."""

    command: str
    owner: str  # the workerctl user
    user: JobUser  # the account it runs as
    home: Path  # its home on the host
    cgroups: tuple[Path, ...]  # the cgroup.procs files it joins


@dataclass(frozen=True)
class FirstProcess:
    """How to start a job's first process: its command line, environment and working directory, and the
    descriptors it must inherit (their numbers are the same in it)."""

    argv: list[str]
    environment: dict[str, str]
    directory: Path
    pass_fds: tuple[int, ...]


class Sandbox:
    def __init__(self, namespaces: bool, network: str, hidden: tuple[Path, ...], helper: Path | None,
                 seccomp_filter: int | None) -> None:
        self.namespaces = namespaces
        self.isolated_network = namespaces and network == "none"
        self.hidden = hidden
        self.helper = helper
        self.seccomp_filter = seccomp_filter  # the sealed memory file of seccomp.job_filter, or None
        self._networks: NetworkNamespaces | None = None  # see make_networks_ahead

    @classmethod
    def choose(cls, settings: ServerSettings, announce: bool = True) -> Sandbox:
        """The sandbox for the settings, logged if `announce`. As root it fails closed: SandboxUnavailable
        unless everything asked for works (the helper, namespaces unless `--sandbox off`, seccomp unless
        `--seccomp off`). Not as root, "auto" and "default" fall back with one warning each."""
        if not announce:
            with _quiet():
                return cls.choose(settings)
        root = os.geteuid() == 0
        helper = HELPER if os.access(HELPER, os.X_OK) else None
        if root and helper is None:
            raise SandboxUnavailable(f"the sandbox helper {HELPER} was not built, and a server run as root needs it "
                                     "to start jobs as their own users: install a C compiler and libc's static "
                                     "library (Debian: build-essential), then reinstall workerctl")
        seccomp_filter = None
        if settings.seccomp == "default":
            if helper is None:
                log.warning("seccomp: off, as the sandbox helper was not built; jobs may make any system call")
            else:
                try:
                    seccomp_filter = job_filter()
                except SeccompUnavailable as error:
                    if root:
                        raise SandboxUnavailable(f"seccomp \"default\" needs libseccomp, and {error}: install it, "
                                                 "or give --seccomp off") from None
                    log.warning("seccomp: off, as %s; jobs may make any system call", error)
        namespaces = settings.sandbox != "off"
        hidden = hidden_from_jobs(settings)
        if namespaces:
            problem = cls(True, settings.network, hidden, helper, seccomp_filter).problem()
            if problem is not None and (root or settings.sandbox == "on"):
                if seccomp_filter is not None:
                    os.close(seccomp_filter)
                raise SandboxUnavailable(f"the sandbox is on, and {problem}: give --sandbox off to run jobs "
                                         "without it (they then see the host's processes, files and network)")
            if problem is not None:
                log.warning("sandbox: off, as %s; jobs see the host's processes, files and network", problem)
                namespaces = False
        chosen = cls(namespaces, settings.network, hidden, helper, seccomp_filter)
        if chosen.namespaces:
            log.info("sandbox: on: namespaces for processes, mounts, cgroups, IPC and host name, a read-only root "
                     "of the system paths, network %s; seccomp %s",
                     "none (a loopback of its own)" if chosen.isolated_network else "the host's",
                     "on" if seccomp_filter is not None else "off")
        elif settings.sandbox == "off":
            log.warning("sandbox: off (--sandbox off): jobs see the host's processes, files and network; seccomp %s",
                        "on" if seccomp_filter is not None else "off")
        return chosen

    @property
    def resolved(self) -> tuple[str, str]:
        """The `--sandbox` and `--seccomp` settings this sandbox amounts to."""
        return "on" if self.namespaces else "off", "default" if self.seccomp_filter is not None else "off"

    def close(self) -> None:
        if self.seccomp_filter is not None:
            os.close(self.seccomp_filter)
        if self._networks is not None:
            self._networks.close()

    def home_inside(self, plan: JobPlan) -> Path:
        """Where the job finds its home."""
        return HOMES_INSIDE / plan.owner if self.namespaces else plan.home

    def make_networks_ahead(self) -> None:
        """Start making network namespaces ahead of jobs, where they need them (the supervisor, once)."""
        if self.isolated_network and self._networks is None:
            self._networks = NetworkNamespaces(_NETWORKS_AHEAD, _NETWORKS_KEPT_PER_USER, _NETWORKS_KEPT)

    def network_for(self, owner: str) -> int | None:
        """A network namespace for a job of `owner`'s about to start, where one is at hand; hand it back with
        `network_done` once the job has ended (or failed to start)."""
        return None if self._networks is None else self._networks.take(owner)

    def network_done(self, owner: str, network: int | None) -> None:
        if network is not None:
            assert self._networks is not None
            self._networks.give_back(owner, network)

    @property
    def keeps_jobs(self) -> bool:
        """Whether each job gets a keeper (keepers.py): the helper's outer process is one, where it is the parent
        of the job's PID namespace, whose end ends all of the job."""
        return self.helper is not None and self.namespaces

    @contextmanager
    def first_process(self, plan: JobPlan, environment: dict[str, str], network: int | None = None,
                      keeper: tuple[list[str], tuple[int, ...]] = ([], ())) -> Iterator[FirstProcess]:
        """How to start the job's first process (in the network namespace open as `network`, from
        `network_for`, or in one the helper makes), with the keeper's options and descriptors (keepers.py,
        where `keeps_jobs`); start it inside this block (the descriptors it inherits are closed here after it,
        `network` and the keeper's excepted)."""
        job = [SHELL, "-c", plan.command]
        if self.helper is None:
            yield FirstProcess([SHELL, "-c", _JOIN_THEN_EXEC, SHELL, "/proc/self/oom_score_adj",
                                str(JOB_OOM_SCORE_ADJ), *map(str, plan.cgroups), "--", *job],
                               environment, plan.home, ())
            return
        options = ["-a", str(JOB_OOM_SCORE_ADJ)]
        for cgroup in plan.cgroups:
            options += ["-j", str(cgroup)]
        options += self._isolation(home=(plan.home, self.home_inside(plan)), network=network)
        if not plan.user.is_self:
            options += ["-u", str(plan.user.uid), "-g", str(plan.user.gid)]
        options += ["-d", str(self.home_inside(plan))]
        options += [f"-e{name}={value}" for name, value in environment.items()]
        keeper_options, keeper_fds = keeper
        with self._options_file([*options, *keeper_options, "--", *job]) as fds:
            yield FirstProcess([str(self.helper), "-f", str(fds[0])],
                               {name: environment[name] for name in _HELPER_ENVIRONMENT if name in environment},
                               Path("/"), (*fds, *([] if network is None else [network]), *keeper_fds))

    def _isolation(self, home: tuple[Path, Path] | None, network: int | None = None) -> list[str]:
        """The helper's options for namespaces (joining the network namespace open as `network`, if given),
        the job's root and seccomp."""
        options = []
        if self.namespaces:
            options += ["-n", "-o", "workerctl-job"]
            if self.isolated_network:
                options += ["-N"] if network is None else ["-J", str(network)]
            for path in SYSTEM_PATHS:
                options += ["-R", path]
            for path in self.hidden:
                options += ["-H", str(path)]
            if home is not None:
                options += ["-b", f"{home[0]}:{home[1]}"]
            for path in PRIVATE_TMPFS:
                options += ["-t", path]
        if self.seccomp_filter is not None:
            options += ["-S", str(self.seccomp_filter)]
        return options

    @contextmanager
    def _options_file(self, options: list[str]) -> Iterator[tuple[int, ...]]:
        """The helper's options in a memory file: its descriptor, then the seccomp filter's if any."""
        if any("\0" in option for option in options):  # the protocol refuses them; each string ends at one
            raise OSError(errno.EINVAL, "a NUL character in the job's command or variables")
        fd = os.memfd_create("workerctl-job", os.MFD_CLOEXEC)
        try:
            os.write(fd, b"".join(option.encode() + b"\0" for option in options))
            yield (fd,) if self.seccomp_filter is None else (fd, self.seccomp_filter)
        finally:
            os.close(fd)

    def problem(self) -> str | None:
        """Why this sandbox cannot run a job here, in words; None if it can (it runs one as "nobody", with the
        same namespaces, root, seccomp filter and hidden paths a job gets)."""
        if os.geteuid() != 0:
            return "the server does not run as root"
        if self.helper is None:
            return f"the sandbox helper {HELPER} was not built"
        with tempfile.TemporaryDirectory(prefix="workerctl-probe-") as home:
            os.chown(home, PROBE_ID, PROBE_ID)
            options = [*self._isolation(home=(Path(home), HOMES_INSIDE / "probe")),
                       "-u", str(PROBE_ID), "-g", str(PROBE_ID), "--", "/bin/true"]
            with self._options_file(options) as fds:
                try:
                    done = subprocess.run([str(self.helper), "-f", str(fds[0])], capture_output=True, text=True,
                                          timeout=_PROBE_SECONDS, env={}, cwd="/", pass_fds=fds)
                except (OSError, subprocess.TimeoutExpired) as error:
                    return f"the sandbox helper cannot run ({error})"
        if done.returncode != 0:
            return f"this kernel refuses it ({done.stderr.strip() or f'exit status {done.returncode}'})"
        return None


@contextmanager
def _quiet() -> Iterator[None]:
    """This module logs nothing in the block but errors."""
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def hidden_from_jobs(settings: ServerSettings) -> tuple[Path, ...]:
    """What a sandboxed job must not see where a system path holds it, by real paths (the helper follows no
    link to cover them): the data directory; the server's key, the users file and the audit log, each with the
    whole directory it lies in where that directory is workerctl's own (/etc/workerctl, with the CA's key,
    client certificates and settings files beside them)."""
    hidden = [Path(os.path.realpath(settings.data_dir))]
    for path in (settings.key, settings.users, settings.audit_log):
        if path is not None:
            real = Path(os.path.realpath(path))
            hidden.append(real.parent if "workerctl" in real.parent.name else real)
    return tuple(dict.fromkeys(hidden))
