"""`workerctl agent`: one worker host of a cluster. The same supervisor as a single host's, writing to the
cluster's Redis store under the agent's name, and beside it the relay (workerctl.cluster.relay: Celery's worker,
the host's lease and, one agent at a time, the lost-host sweep) in place of the HTTPS front end; both restarted
if they die, both ended on SIGTERM with every job ended first.

A guard process in a session of its own outlives a kill of the agent's whole process group: when the agent
is gone it kills whatever its jobs left running (they must never run unsupervised), and their records, still
`running`, are settled as lost once the host's lease lapses. With live restore the jobs run on under their
keepers instead, for the agent's next run to take back with its lease; if none comes in time, the keepers end
them before the lease lapses (cluster/fencing.py).

Jobs must never reach the cluster's Redis: whoever can write there runs commands on every host. Where jobs share
the host's network (`--network host`, or no sandbox), nothing but Redis's password keeps them out, so the agent
refuses to start unless Redis needs one.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.connection import parse_url
from workerctl.cluster.fencing import LeaseFile
from workerctl.cluster.hosts import Cluster
from workerctl.cluster.relay import run_relay
from workerctl.runtime.linux import become_subreaper, protect_from_oom_killer
from workerctl.runtime.logs import announce, configure_logging
from workerctl.runtime.settings import FRONT_END_SETTINGS, ServerSettings, changed_flags
from workerctl.server.serve import ServeError, choose_sandbox, prepare_host, run_children, tidy_up_after_jobs
from workerctl.store.atomic_write import write_atomically
from workerctl.store.backends import is_redis_location, open_writer, when_reachable
from workerctl.store.interface import StoreError
from workerctl.store.layout import DataLayout
from workerctl.store.redis_connection import RedisKeys, RedisLocation, connect
from workerctl.supervisor.containment import Containment, choose_containment
from workerctl.supervisor.keepers import boot_time_ns
from workerctl.supervisor.sandbox import Sandbox

log = logging.getLogger(__name__)

_RELAY_STOP_SECONDS = 5.0
_NAME_CHECK_SECONDS = 0.5
_SUPERVISOR_STOP_MARGIN_SECONDS = 15.0


def check_agent_settings(settings: ServerSettings) -> tuple[ServerSettings, Containment, range]:
    """As serve's checks, for what an agent uses: the cluster's store (waited for while it cannot be reached),
    the data directory, containment, sandbox; and, where its jobs would share the host's network, that Redis
    keeps out clients without a password."""
    if settings.cluster is None or not is_redis_location(settings.cluster):
        raise ServeError("an agent needs --cluster redis://HOST:PORT/DB (or rediss://…)")
    if not settings.name:
        raise ServeError("an agent needs --name NAME, its host's name in the cluster")
    sandbox = choose_sandbox(settings)  # before Redis is reached, to refuse a URL that lets jobs in at once
    if not sandbox.keeps_jobs:
        log.warning("self-fencing: off, as jobs have no sandbox and so no keeper: cut off from the cluster, this "
                    "host runs its jobs on until it is back (their records may say lost meanwhile)")
    try:
        location = RedisLocation.parse(settings.cluster)
        shared = _shared_network(settings, sandbox)
        if shared is not None:
            _check_the_url_keeps_jobs_out(settings.cluster, location, shared)
        when_reachable(lambda: open_writer(settings.cluster, settings.max_output_bytes, settings.name)).close()
        if shared is not None and _answers_without_a_password(location):
            raise ServeError(f"Redis at {location.where} lets in clients that give no password, and this agent's "
                             f"jobs could reach it, as they share the host's network ({shared.why}): give Redis's "
                             f"default user a password too (requirepass){shared.instead}")
    except (StoreError, ValueError) as error:
        raise ServeError(str(error)) from None
    return prepare_host(settings, sandbox)


@dataclass(frozen=True)
class _SharedNetwork:
    """Why an agent's jobs would share the host's network, how else to keep them off it (", or ..."), and
    whether they would see the host's processes too, having no sandbox."""

    why: str
    instead: str
    no_sandbox: bool


def _shared_network(settings: ServerSettings, sandbox: Sandbox) -> _SharedNetwork | None:
    """How this agent's jobs would share the host's network, by the sandbox the supervisor will give them; None
    if each would have a network of its own."""
    if settings.sandbox == "off":
        return _SharedNetwork("--sandbox off", ", or run them in the sandbox with --network none", True)
    if not sandbox.namespaces:  # "auto" where the agent is not root
        not_root = os.geteuid() != 0
        return _SharedNetwork("no sandbox here" + (", as the agent does not run as root" if not_root else ""),
                              ", or run the agent as root, which gives each job a sandbox" if not_root else "", True)
    if settings.network == "host":
        return _SharedNetwork("--network host", ", or keep --network none", False)
    return None


def _check_the_url_keeps_jobs_out(url: str, location: RedisLocation, shared: _SharedNetwork) -> None:
    """Refuse a URL without a password; warn where jobs can read the password from this agent's command line."""
    if not parse_url(location.url).get("password"):
        raise ServeError(f"this agent's jobs could reach the cluster's Redis, as they share the host's network "
                         f"({shared.why}), and its URL has no password to keep them out: give Redis a password "
                         f"(requirepass, or an ACL user) and put it in the URL (redis://[USER]:PASSWORD@HOST:PORT/DB, "
                         f"best in the settings file){shared.instead}")
    # Every user may read /proc/PID/cmdline. A warning, not a refusal: this agent cannot know what else shows the
    # password (a front end's command line on the same host), and jobs that run as the agent's own user (where it
    # is not root) may read its settings file all the same.
    if shared.no_sandbox and url.encode() in Path("/proc/self/cmdline").read_bytes():
        log.warning("the cluster's URL, with Redis's password, is on this agent's command line, where its jobs can "
                    "read it (they see the host's processes, with %s): put it in the settings file (--config, mode "
                    "0600) instead", shared.why)


def _answers_without_a_password(location: RedisLocation) -> bool:
    """Whether a client that gives no user or password, as a job would, may read the cluster's keys: Redis can
    have a password for the agent's ACL user and none for its default one."""
    parts = urlsplit(location.url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True)
             if name not in ("username", "password")]
    anonymous = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, urlencode(query), ""))
    client = connect(RedisLocation(anonymous, location.prefix, location.where))
    try:
        client.exists(RedisKeys(location.prefix).sequence)
        return True
    except redis.RedisError:  # NOAUTH or NOPERM: kept out; or not reached, as a job would not reach it either
        return False
    finally:
        client.close()


def run_agent(settings: ServerSettings) -> int:
    """Run the agent until SIGTERM or SIGINT; the exit status to end with."""
    configure_logging(settings.log_level)
    multiprocessing.current_process().name = "agent"
    settings, containment, job_uids = check_agent_settings(settings)
    assert settings.cluster is not None
    ignored = changed_flags(settings, FRONT_END_SETTINGS)
    if ignored:
        log.warning("ignoring %s from the settings file: an agent serves no clients", ", ".join(ignored))
    try:
        become_subreaper()
        protect_from_oom_killer()
        announce.info("agent %s of the cluster at %s, data directory %s; jobs time out after %g s", settings.name,
                      RedisLocation.parse(settings.cluster).where, settings.data_dir, settings.job_timeout)
        with tempfile.TemporaryDirectory(prefix="workerctl-agent-") as run_dir:
            guard_end = _start_guard(settings, job_uids, Path(run_dir))
            link_address = Path(run_dir) / "supervisor.sock"
            holder = _holder(settings)
            _take_the_name(settings, holder)
            status = run_children(settings, containment, job_uids, link_address, (
                "relay", run_relay, lambda authkey, parent: (settings, holder, link_address, authkey, parent),
                _RELAY_STOP_SECONDS))
        guard_end.close()
        return status
    finally:
        containment.close()


def _holder(settings: ServerSettings) -> str:
    """This run of the agent's name for itself as the holder of its host's lease. With live restore, the one
    the last run on this data directory had: a run that takes its jobs back takes its lease back too."""
    if not settings.live_restore:
        return secrets.token_hex(8)
    path = DataLayout(settings.data_dir).agent_holder
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        holder = secrets.token_hex(8)
        write_atomically(path, holder.encode())
        return holder


def _take_the_name(settings: ServerSettings, holder: str) -> None:
    """Take the lease of this host's name for `holder`, and write until when its jobs may run (fencing.py).
    First wait for any other holder's to lapse: an agent that stopped a moment ago without giving it up lets it
    lapse within --host-timeout; another agent running with the same --name never does, and this one waits (its
    supervisor would take that agent's jobs for its own)."""
    assert settings.cluster is not None and settings.name is not None
    cluster = Cluster(settings.cluster)
    lease_file = LeaseFile(DataLayout(settings.data_dir).lease, settings)
    try:
        waiting = False
        while True:
            sent = boot_time_ns()
            held_by = when_reachable(lambda: cluster.renew_lease(settings.name, holder, settings.max_jobs,
                                                                 settings.kill_grace, settings.host_timeout))
            if held_by in (None, holder):
                lease_file.renewed(sent)
                return
            if not waiting:
                log.warning("host %s holds a lease already: waiting for it to lapse (its agent stopped a moment "
                            "ago, or another agent runs with --name %s)", settings.name, settings.name)
            waiting = True
            time.sleep(_NAME_CHECK_SECONDS)
    finally:
        lease_file.close()
        cluster.close()


def _start_guard(settings: ServerSettings, job_uids: range, run_dir: Path) -> Any:
    """Start the guard; the end of its pipe to keep open for as long as the agent runs."""
    context = multiprocessing.get_context("spawn")
    watched, kept = context.Pipe(duplex=False)
    guard = context.Process(target=_guard, args=(settings, job_uids, run_dir, watched), name="guard", daemon=False)
    guard.start()
    watched.close()
    return kept


def _guard(settings: ServerSettings, job_uids: range, run_dir: Path, watched: Any) -> None:
    """Wait, in a session of its own, for the agent to be gone (its end of the pipe closes with it, however it
    ends), then kill whatever processes its jobs left, and remove the agent's run directory (its link's
    socket) if it could not."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        watched.recv()
    except (EOFError, OSError):
        pass
    containment = choose_containment(settings.containment, DataLayout(settings.data_dir).instance, job_uids)
    try:
        tidy_up_after_jobs(settings, containment, ())
    finally:
        containment.close()
        shutil.rmtree(run_dir, ignore_errors=True)
