"""The serve process: check the settings, bind the port, then run the front end and the supervisor as two
separate processes, restart either one if it dies, and on SIGTERM or Ctrl-C shut both down with every job ended.

It is a child subreaper, so if the supervisor is killed outright its jobs re-parent here rather than to init;
they are ended at once, and the new supervisor settles their records. Both children ask the kernel to signal
them if this process dies, and the supervisor then ends every job before it exits: killing `serve` with -9
leaves nothing running. With live restore (`--live-restore`) running jobs are left to their keepers instead
(supervisor/keepers.py), for the next supervisor to take back.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msgspec.structs import replace
from workerctl.dev_material import DEV_SERVER_CERT, DEV_USERS
from workerctl.runtime.linux import become_subreaper, protect_from_oom_killer
from workerctl.runtime.logs import announce, configure_logging
from workerctl.runtime.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.runtime.tls import tls_context
from workerctl.server import roles
from workerctl.store.layout import DataDirError, DataLayout, hold_lock
from workerctl.store.local import prepare
from workerctl.store.users import UsersFileError, load_users
from workerctl.supervisor.accounts import NO_IDS, JobAccounts, claim_id_block
from workerctl.supervisor.containment import Containment, choose_containment
from workerctl.supervisor.exits import reap_exited
from workerctl.supervisor.homes import unmount_homes
from workerctl.supervisor.keepers import jobs_left_to_keepers
from workerctl.supervisor.limits import remove_abandoned_v1_trees
from workerctl.supervisor.sandbox import Sandbox, SandboxUnavailable

log = logging.getLogger(__name__)

_FIRST_RESTART_DELAY = 0.2
_LONGEST_RESTART_DELAY = 10.0
_STABLE_AFTER_SECONDS = 30.0  # a child that ran this long before dying is restarted without delay
_FRONT_END_STOP_SECONDS = 5.0
_SUPERVISOR_STOP_MARGIN_SECONDS = 15.0
_ORPHANS_DIE_SECONDS = 5.0  # at most: what is left after that is the next supervisor's to end

FIRST_START_REASON = "server restarted before the job ended"
CRASH_REASON = "the supervisor stopped unexpectedly and was restarted"


class ServeError(Exception):
    """The server cannot start; the message says why in one sentence."""


def check_settings(settings: ServerSettings) -> tuple[ServerSettings, Containment, range]:
    """Fail now, with one clear sentence, on anything that would make the server fail later. Returns the
    settings with the containment chosen, the containment, and the user IDs jobs get (held until exit)."""
    check_front_end_settings(settings)
    return prepare_host(settings)


def check_front_end_settings(settings: ServerSettings) -> None:
    """What a front end uses, a single host's or a cluster's: its certificate, client CA, audit log and users
    file; a ServeError of one sentence for what will not do, and a warning for the public development
    material."""
    try:
        tls_context(settings.cert, settings.key)
    except (OSError, ssl.SSLError) as error:
        raise ServeError(f"cannot use the certificate {settings.cert} with the key {settings.key}: "
                         f"{getattr(error, 'strerror', None) or error}") from None
    if settings.client_ca is not None:
        try:
            tls_context(settings.cert, settings.key, settings.client_ca)
        except (OSError, ssl.SSLError) as error:
            raise ServeError(f"cannot use the client CA certificate {settings.client_ca}: "
                             f"{getattr(error, 'strerror', None) or error}") from None
    if settings.audit_log is not None:
        try:  # made as the front end makes it: readable by root alone (it names users and clients)
            os.close(os.open(settings.audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as error:
            raise ServeError(f"cannot write the audit log {settings.audit_log}: {error.strerror or error}") from None
    try:
        load_users(settings.users)
    except UsersFileError as error:
        raise ServeError(str(error)) from None
    for material in sorted({settings.cert, settings.users} & {DEV_SERVER_CERT, DEV_USERS}):
        log.warning("using the public development material %s: for your own machine only", material)


def prepare_host(settings: ServerSettings, sandbox: Sandbox | None = None) -> tuple[ServerSettings, Containment,
                                                                                 range]:
    """What a host that runs jobs needs, serve's or an agent's: the data directory (locked until this process
    exits), the user IDs jobs get (likewise), containment and the sandbox (`sandbox`, where the caller chose it
    already: choose_sandbox); a ServeError of one sentence for what is missing. Returns the settings with the
    containment and the sandbox chosen, which the supervisor uses instead of choosing again, the containment, and
    the user IDs."""
    try:
        # First: a server that refuses to start leaves nothing behind (no ID block claimed, no cgroup made).
        accounts = JobAccounts.resolve(settings.job_user)
        if sandbox is None:
            sandbox = choose_sandbox(settings)
        layout = DataLayout(settings.data_dir)
        prepare(layout)
        hold_lock(layout.serve_lock)
        job_uids = claim_id_block(layout)[0] if accounts.dynamic else NO_IDS
        if accounts.fixed is None or not accounts.fixed.is_self:
            layout.check_reachable_by_others()
        containment = choose_containment(settings.containment, layout.instance, job_uids)
    except (DataDirError, ValueError) as error:
        raise ServeError(str(error)) from None
    except OSError as error:
        raise ServeError(f"containment {settings.containment!r} is not available here: {error}") from None
    if accounts.fixed is not None and accounts.fixed.is_self:
        log.warning("jobs run as the server's own user, so they can read its files and signal it; run the "
                    "server as root to give each job a user of its own")
    if settings.live_restore and not sandbox.keeps_jobs:
        raise ServeError("live restore needs the sandbox: each job's keeper is the parent of its PID namespace, "
                         "whose end ends all of the job; run as root with the sandbox on, or without "
                         "--live-restore")
    sandbox_mode, seccomp_mode = sandbox.resolved
    return (replace(settings, containment=containment.name, sandbox=sandbox_mode, seccomp=seccomp_mode),
            containment, job_uids)


def choose_sandbox(settings: ServerSettings) -> Sandbox:
    """The sandbox jobs will get here, logged, to decide by (its filter and namespaces are the supervisor's to
    make: this one holds none); a ServeError of one sentence where it cannot be had."""
    try:
        sandbox = Sandbox.choose(settings)
    except SandboxUnavailable as error:
        raise ServeError(str(error)) from None
    sandbox.close()
    return sandbox


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


class Child:
    """One of the two server processes, started again after a delay that grows while it keeps dying."""

    def __init__(self, name: str, target: Callable[..., None], arguments: Callable[[], tuple[Any, ...]]) -> None:
        self.name = name
        self.target = target
        self.arguments = arguments
        self.process: multiprocessing.process.BaseProcess | None = None
        self.started_at = 0.0
        self.restart_delay = 0.0
        self.restart_at: float | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # fork would copy a running loop's threads and locks
        self.process = context.Process(target=self.target, args=self.arguments(), name=self.name)
        self.process.start()
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def died(self) -> int | None:
        """The exit code, once, if the process has just been found dead."""
        if self.process is None or self.restart_at is not None or self.process.is_alive():
            return None
        now = time.monotonic()
        stable = now - self.started_at >= _STABLE_AFTER_SECONDS
        self.restart_delay = 0.0 if stable else min(max(self.restart_delay * 2, _FIRST_RESTART_DELAY),
                                                    _LONGEST_RESTART_DELAY)
        self.restart_at = now + self.restart_delay
        return self.process.exitcode

    def stop(self, timeout: float) -> None:
        if self.process is None or not self.process.is_alive():
            return
        self.process.terminate()
        self.process.join(timeout)
        if self.process.is_alive():
            log.error("%s did not stop within %g s; killing it", self.name, timeout)
            self.process.kill()
            self.process.join()


def run_server(settings: ServerSettings) -> int:
    """Run the server until SIGTERM or SIGINT; the exit status to end with."""
    configure_logging(settings.log_level)
    multiprocessing.current_process().name = "serve"
    settings, containment, job_uids = check_settings(settings)
    try:
        become_subreaper()
        protect_from_oom_killer()  # the front end and the supervisor inherit it
        listening = _listen(settings.host, settings.port)
        host, port = listening.getsockname()[:2]
        announce.info("listening on https://%s:%d with certificate %s, users file %s, data directory %s; "
                      "jobs time out after %g s", f"[{host}]" if ":" in host else host, port, settings.cert,
                      settings.users, settings.data_dir, settings.job_timeout)
        with tempfile.TemporaryDirectory(prefix="workerctl-") as run_dir:
            link_address = Path(run_dir) / "supervisor.sock"
            return run_children(settings, containment, job_uids, link_address, (
                "web", roles.front_end, lambda authkey, parent: (settings, listening, link_address, authkey, parent),
                _FRONT_END_STOP_SECONDS))
    finally:
        containment.close()


def run_children(settings: ServerSettings, containment: Containment, job_uids: range, link_address: Path,
                 companion: tuple[str, Callable[..., None], Callable[[bytes, int], tuple[Any, ...]], float]) -> int:
    """Run the supervisor and its companion on the link (serve's front end, or an agent's relay), restart
    either if it dies, and at SIGTERM or SIGINT stop both with every job ended; the exit status. `companion` is
    its name, its process's function, the arguments that function takes given the link's key and this
    process's pid, and the seconds it has to stop."""
    name, target, arguments, stop_seconds = companion
    authkey = secrets.token_bytes(32)
    parent = os.getpid()
    supervisor_reason = [FIRST_START_REASON]
    supervisor = Child("supervisor", roles.supervisor,
                       lambda: (settings, job_uids, link_address, authkey, parent, supervisor_reason[0]))
    other = Child(name, target, lambda: arguments(authkey, parent))
    children = (supervisor, other)
    wake_up, _wake_writer, stop_signals = _route_signals()
    supervisor.start()
    other.start()
    exit_status = 0
    while not stop_signals:
        timeout = min([child.restart_at - time.monotonic() for child in children if child.restart_at is not None]
                      + [1.0])
        waitables: list[Any] = [wake_up] + [child.process.sentinel for child in children
                                            if child.process is not None and child.running]
        multiprocessing.connection.wait(waitables, timeout=max(timeout, 0.0))
        _drain(wake_up)
        for child in children:
            code = child.died()
            if code is None:
                continue
            if code == UNUSABLE_SETTINGS_EXIT:
                log.critical("%s cannot work with these settings; stopping", child.name)
                exit_status = UNUSABLE_SETTINGS_EXIT
                stop_signals.append(signal.SIGTERM)
                break
            log.error("%s exited unexpectedly (exit code %s); restarting it in %g s", child.name, code,
                      child.restart_delay)
            if child is supervisor:
                supervisor_reason[0] = CRASH_REASON
                if not settings.live_restore:  # else its jobs run on under their keepers, to be taken back
                    end_orphaned_jobs(containment, children)
        for child in children:
            if child.restart_at is not None and time.monotonic() >= child.restart_at and not stop_signals:
                child.start()
        _reap_orphans(children)
    announce.info("shutting down (%s)", signal.Signals(stop_signals[0]).name)
    # The supervisor first: it ends and records every job while the front end still tells followers and
    # waiters how their jobs ended (and answers new requests with 503).
    supervisor.stop(settings.kill_grace + _SUPERVISOR_STOP_MARGIN_SECONDS)
    other.stop(stop_seconds)
    tidy_up_after_jobs(settings, containment, children)
    announce.info("stopped")
    return exit_status


def tidy_up_after_jobs(settings: ServerSettings, containment: Containment, children: tuple[Child, ...]) -> None:
    """What a supervisor that ended every job does at its stop, if none ran at the end to do it: kill whatever
    processes jobs left, unmount the homes, remove the cgroups. Unless jobs were left to their keepers: their
    homes and cgroups stay for them."""
    if jobs_left_to_keepers(settings):
        log.info("jobs run on under their keepers, for the next start to take back")
        return
    end_orphaned_jobs(containment, children)
    unmount_homes(DataLayout(settings.data_dir))
    remove_abandoned_v1_trees(containment.instance)


def _route_signals() -> tuple[socket.socket, socket.socket, list[int]]:
    """Record SIGTERM and SIGINT in a list, and wake the main loop on them. Returns the socket to wait on, the
    socket the signals write to (keep it open) and the list. SIGCHLD is left alone: hundreds of orphans dying
    together would flood the wake-up socket; the loop reaps them on its next turn, within a second."""
    wake_up, wake_writer = socket.socketpair()
    wake_up.setblocking(False)
    wake_writer.setblocking(False)
    signal.set_wakeup_fd(wake_writer.fileno(), warn_on_full_buffer=False)
    received: list[int] = []
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, _frame: received.append(number))
    return wake_up, wake_writer, received


def _drain(wake_up: socket.socket) -> None:
    try:
        while wake_up.recv(4096):
            pass
    except BlockingIOError:
        pass


def end_orphaned_jobs(containment: Containment, children: tuple[Child, ...]) -> None:
    """SIGKILL at once whatever a dead supervisor's jobs left running, and reap them, until none is left. The
    next supervisor makes sure nothing is left (as it does at every start) and records those jobs as ended."""
    leftovers = containment.leftovers()
    # Until they are gone, not for a fixed moment: on a busy host a killed job can take longer to exit, and
    # until it has, the first process's working directory keeps its owner's home from being unmounted.
    deadline = time.monotonic() + _ORPHANS_DIE_SECONDS
    delay = 0.001
    while True:
        leftovers.kill_all()
        _reap_orphans(children)
        if leftovers.is_empty() or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    leftovers.release()


def _reap_orphans(children: tuple[Child, ...]) -> None:
    """Reap processes that re-parented here, leaving the two children's exit statuses to multiprocessing."""
    # Asking whether a child runs collects its exit status if it has died, so it is not waitable below.
    reap_exited(keep={child.process.pid for child in children if child.running})  # type: ignore[union-attr]
