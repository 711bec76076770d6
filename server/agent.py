"""`workerctl agent`: one worker host of a cluster. The same supervisor as a single host's, writing to the
cluster's Redis store under the agent's name, and beside it the relay (relay.py) in place of the HTTPS front end;
both restarted if they die, both ended on SIGTERM with every job ended first.

A guard process in a session of its own outlives a kill of the agent's whole process group: when the agent
is gone it kills whatever its jobs left running (they must never run unsupervised), and their records, still
`running`, are settled as lost once the host's lease lapses.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from workerctl.server.linux import become_subreaper, protect_from_oom_killer
from workerctl.server.logs import announce, configure_logging
from workerctl.server.relay import run_relay
from workerctl.server.serve import (
    CRASH_REASON,
    FIRST_START_REASON,
    Child,
    ServeError,
    _drain,
    _end_orphaned_jobs,
    _reap_orphans,
    _route_signals,
)
from workerctl.server.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.store.backends import is_redis_location, open_writer
from workerctl.store.interface import StoreError
from workerctl.store.layout import DataDirError, DataLayout, hold_lock
from workerctl.store.local import prepare
from workerctl.store.redis_connection import RedisLocation
from workerctl.supervisor.accounts import NO_IDS, JobAccounts, claim_id_block
from workerctl.supervisor.containment import Containment, choose_containment
from workerctl.supervisor.homes import unmount_homes
from workerctl.supervisor.limits import remove_abandoned_v1_trees
from workerctl.supervisor.main import run_supervisor
from workerctl.supervisor.sandbox import namespaces_problem, unavailable

log = logging.getLogger(__name__)

_RELAY_STOP_SECONDS = 5.0
_SUPERVISOR_STOP_MARGIN_SECONDS = 15.0


def check_agent_settings(settings: ServerSettings) -> tuple[ServerSettings, Containment, range]:
    """As serve's checks, for what an agent uses: the cluster's store, the data directory, containment, sandbox."""
    if settings.cluster is None or not is_redis_location(settings.cluster):
        raise ServeError("an agent needs --cluster redis://HOST:PORT/DB (or rediss://…)")
    if not settings.name:
        raise ServeError("an agent needs --name NAME, its host's name in the cluster")
    try:
        open_writer(settings.cluster, settings.max_output_bytes, settings.name).close()
        layout = DataLayout(settings.data_dir)
        prepare(layout)
        hold_lock(layout.serve_lock)  # held until this process exits
        accounts = JobAccounts.resolve(settings.job_user)
        job_uids = claim_id_block(layout)[0] if accounts.dynamic else NO_IDS
        if accounts.fixed is None or not accounts.fixed.is_self:
            layout.check_reachable_by_others()
        containment = choose_containment(settings.containment, layout.instance, job_uids)
        if settings.sandbox == "on" and (problem := namespaces_problem(settings.network)) is not None:
            raise ServeError(unavailable(problem))
    except (DataDirError, ValueError, StoreError) as error:
        raise ServeError(str(error)) from None
    except OSError as error:
        raise ServeError(f"containment {settings.containment!r} is not available here: {error}") from None
    return replace(settings, containment=containment.name), containment, job_uids


def run_agent(settings: ServerSettings) -> int:
    """Run the agent until SIGTERM or SIGINT; the exit status to end with."""
    configure_logging(settings.log_level)
    multiprocessing.current_process().name = "agent"
    settings, containment, job_uids = check_agent_settings(settings)
    assert settings.cluster is not None
    try:
        become_subreaper()
        protect_from_oom_killer()
        announce.info("agent %s of the cluster at %s, data directory %s; jobs time out after %g s", settings.name,
                      RedisLocation.parse(settings.cluster).where, settings.data_dir, settings.job_timeout)
        guard_end = _start_guard(settings, job_uids)
        with tempfile.TemporaryDirectory(prefix="workerctl-agent-") as run_dir:
            status = _run_children(settings, containment, job_uids, Path(run_dir) / "supervisor.sock")
        guard_end.close()
        return status
    finally:
        containment.close()


def _run_children(settings: ServerSettings, containment: Containment, job_uids: range, link_address: Path) -> int:
    authkey = secrets.token_bytes(32)
    parent = os.getpid()
    supervisor_reason = [FIRST_START_REASON]
    supervisor = Child("supervisor", run_supervisor,
                       lambda: (settings, job_uids, link_address, authkey, parent, supervisor_reason[0]))
    relay = Child("relay", run_relay, lambda: (settings, link_address, authkey, parent))
    children = (supervisor, relay)
    wake_up, _wake_writer, stop_signals = _route_signals()
    supervisor.start()
    relay.start()
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
                _end_orphaned_jobs(containment, children)
        for child in children:
            if child.restart_at is not None and time.monotonic() >= child.restart_at and not stop_signals:
                child.start()
        _reap_orphans(children)
    announce.info("shutting down (%s)", signal.Signals(stop_signals[0]).name)
    supervisor.stop(settings.kill_grace + _SUPERVISOR_STOP_MARGIN_SECONDS)
    relay.stop(_RELAY_STOP_SECONDS)
    _end_orphaned_jobs(containment, children)
    unmount_homes(DataLayout(settings.data_dir))
    remove_abandoned_v1_trees(containment.instance)
    announce.info("stopped")
    return exit_status


def _start_guard(settings: ServerSettings, job_uids: range) -> Any:
    """Start the guard; the end of its pipe to keep open for as long as the agent runs."""
    context = multiprocessing.get_context("spawn")
    watched, kept = context.Pipe(duplex=False)
    guard = context.Process(target=_guard, args=(settings, job_uids, watched), name="guard", daemon=False)
    guard.start()
    watched.close()
    return kept


def _guard(settings: ServerSettings, job_uids: range, watched: Any) -> None:
    """Wait, in a session of its own, for the agent to be gone (its end of the pipe closes with it, however it
    ends), then kill whatever processes its jobs left."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        watched.recv()
    except (EOFError, OSError):
        pass
    containment = choose_containment(settings.containment, DataLayout(settings.data_dir).instance, job_uids)
    try:
        # Until they are gone: a job still exiting keeps its cgroups and its owner's home busy.
        _end_orphaned_jobs(containment, ())
    finally:
        containment.close()
        unmount_homes(DataLayout(settings.data_dir))  # as serve does when no supervisor ran at the end
        remove_abandoned_v1_trees(containment.instance)
