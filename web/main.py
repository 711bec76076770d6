"""The front end process's entry point: serve HTTPS on the socket the serve process bound, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

from workerctl.linux import die_with_parent
from workerctl.server_logging import announce, configure_logging
from workerctl.server_settings import ServerSettings
from workerctl.supervisor.records import RecordReader
from workerctl.web.app import build_server, tls_context
from workerctl.web.auth import Authenticator
from workerctl.web.job_api import JobApi
from workerctl.web.supervisor_link import JobWatchers, SupervisorLink

log = logging.getLogger(__name__)

_DRAIN_SECONDS = 2.0


def run_front_end(settings: ServerSettings, listening: socket.socket, link_address: Path, authkey: bytes,
                  parent_pid: int) -> None:
    configure_logging(settings.log_level)
    die_with_parent(parent_pid)
    asyncio.run(_serve(settings, listening, link_address, authkey))


async def _serve(settings: ServerSettings, listening: socket.socket, link_address: Path, authkey: bytes) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # Ctrl-C: the serve process decides
    link = SupervisorLink(link_address, authkey, JobWatchers())
    api = JobApi(link, RecordReader(settings.data_dir), settings.data_dir / "output", settings.kill_grace)
    server = build_server(api, Authenticator(settings.users), tls_context(settings.cert, settings.key))
    listening.setblocking(False)  # Tornado accepts until the socket would block
    server.add_sockets([listening])
    maintaining = asyncio.create_task(link.maintain())
    announcing = asyncio.create_task(_announce_when_ready(link, listening))
    await stop.wait()
    announcing.cancel()
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), _DRAIN_SECONDS)
    except asyncio.TimeoutError:
        pass
    maintaining.cancel()


async def _announce_when_ready(link: SupervisorLink, listening: socket.socket) -> None:
    await link.ready.wait()
    host, port = listening.getsockname()[:2]
    announce.info("serving https://%s:%d", f"[{host}]" if ":" in host else host, port)
