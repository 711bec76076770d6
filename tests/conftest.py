"""Test fixtures: a throwaway CA, two users, and real servers (see support.py), a redis-server for the store's
Redis back end (see redis_server.py), and a cluster of agents and front ends on it (see cluster_support.py)."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import Cluster, start_cluster
from facilities import required
from redis_server import RedisServer
from support import Server, Tls, Users, mint_tls, start_server
from workerctl.store.users import add_user

_OWN_BASETEMP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a WORKERCTL_REQUIRE that names no facility (facilities.py) before any test runs.

    Give the run a temporary directory of its own, outside /tmp/pytest-of-USER: pytest makes that one 0700
    as each run starts, which would shut the jobs of a run already going beside it (they run as other users)
    out of their working directories. A run that passes removes it; one that fails leaves it to look into."""
    try:
        required()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="workerctl-tests-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts servers of its own (server_factory) is slow: each takes a second or two to start. The
    fast loop, `pytest -m "not slow"`, keeps the tests against a module's shared server. The slow run first."""
    for item in items:
        if "server_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    # The modules with slow tests go first, each kept whole (a module's shared server starts once per worker):
    # test workers then end on short tests rather than wait on one long test begun last.
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return mint_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def users(tmp_path_factory: pytest.TempPathFactory) -> Users:
    file = tmp_path_factory.mktemp("users") / "users.toml"
    return Users(file, {name: add_user(file, name) for name in ("alice", "bob")})


@pytest.fixture
def server_factory(tmp_path: Path, tls: Tls, users: Users) -> Iterator[Callable[..., Server]]:
    """Start servers of one's own (with extra serve flags); each is stopped at the end of the test."""
    started: list[Server] = []

    def factory(*extra: str, **options: Any) -> Server:
        server = start_server(tmp_path, tls, users, *extra, **options)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    """Extra `serve` flags for the module's shared server; a module overrides this fixture to set some."""
    return ()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls: Tls, users: Users,
           server_flags: tuple[str, ...]) -> Iterator[Server]:
    """One server shared by a module's tests that do not need their own."""
    running = start_server(tmp_path_factory.mktemp("server"), tls, users, *server_flags)
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the run (skips the test if it is not installed); tests share nothing in it because
    each uses a key prefix of its own (`redis_location`)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_location(redis_server: RedisServer) -> str:
    """A store location in the run's redis-server, under a key prefix of this test's own."""
    return redis_server.url(prefix=f"test-{secrets.token_hex(6)}")


@pytest.fixture(scope="module")
def cluster_agent_flags() -> tuple[str, ...]:
    """Extra `agent` flags for the module's cluster; a module overrides this fixture to set some."""
    return ()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tls: Tls, users: Users, redis_server: RedisServer,
            cluster_agent_flags: tuple[str, ...]) -> Iterator[Cluster]:
    """A cluster shared by a module's tests: two agents, h1 and h2, and two front ends (cluster_support.py)."""
    with start_cluster(tmp_path_factory.mktemp("cluster"), tls, users, redis_server, *cluster_agent_flags) as running:
        yield running
