"""The supervisor process's entry point: prepare the process, then run the Supervisor until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from workerctl.runtime.linux import (
    become_subreaper,
    die_with_parent,
    limit_processes_per_user,
    raise_open_files_limit,
)
from workerctl.runtime.logs import configure_logging
from workerctl.runtime.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.store.backends import open_writer, when_reachable
from workerctl.store.interface import StoreError
from workerctl.store.layout import DataDirError, DataLayout, hold_lock
from workerctl.supervisor.accounts import JobAccounts
from workerctl.supervisor.cgroups import CgroupContainment
from workerctl.supervisor.containment import choose_containment
from workerctl.supervisor.homes import Homes
from workerctl.supervisor.limits import UserLimits, choose_limits
from workerctl.supervisor.sandbox import Sandbox, SandboxUnavailable
from workerctl.supervisor.service import Supervisor

log = logging.getLogger(__name__)

# A supervisor that died may still be ending its jobs; wait this much longer than a kill's grace for it.
_LOCK_WAIT_MARGIN_SECONDS = 10.0


def run_supervisor(settings: ServerSettings, job_uids: range, link_address: Path, authkey: bytes,
                   parent_pid: int, restart_reason: str) -> None:
    """Run the supervisor until SIGTERM; jobs that each get a user ID of their own get one of `job_uids`."""
    configure_logging(settings.log_level)
    # If the serve process dies, end every job and exit, rather than leave them running unsupervised.
    die_with_parent(parent_pid)
    become_subreaper()
    raise_open_files_limit()
    try:
        # serve chose the sandbox and logged it; this checks it still holds, before anything is set up for jobs.
        sandbox = Sandbox.choose(settings, announce=False)
    except SandboxUnavailable as error:
        log.critical("the supervisor cannot start: %s", error)
        sys.exit(UNUSABLE_SETTINGS_EXIT)
    try:
        # Held until this process exits: a new supervisor starts only once the last one has ended its jobs.
        layout = DataLayout(settings.data_dir)
        hold_lock(layout.supervisor_lock, wait=settings.kill_grace + _LOCK_WAIT_MARGIN_SECONDS)
        # An agent of a cluster (settings.cluster) keeps its jobs in the cluster's shared store, under its name.
        store = when_reachable(lambda: open_writer(settings.cluster or settings.data_dir, settings.max_output_bytes,
                                                   settings.name))
        containment = choose_containment(settings.containment, layout.instance, job_uids)
        # An agent's keepers end their jobs when its lease, as the agent last renewed it, is about to lapse.
        lease_fd = os.open(layout.lease, os.O_RDONLY | os.O_CLOEXEC) if settings.cluster else None
    except (DataDirError, OSError, StoreError) as error:
        log.critical("the supervisor cannot start: %s", error)
        sys.exit(UNUSABLE_SETTINGS_EXIT)
    accounts = JobAccounts.resolve(settings.job_user, job_uids, layout.job_users)
    if accounts.dynamic:
        limit_processes_per_user(settings.user_processes)
    limits = choose_limits(layout.instance, containment.root if isinstance(containment, CgroupContainment) else None,
                           UserLimits(settings.user_memory, settings.user_cpus, settings.user_processes))
    homes = Homes.choose(layout, settings.home_size)
    sandbox.make_networks_ahead()
    supervisor = Supervisor(settings, store, containment, accounts, sandbox, limits, homes, link_address, authkey,
                            lease_fd)
    asyncio.run(supervisor.run(restart_reason))
