"""Homes and job accounts: each user's home is kept between their jobs, private to them, and bounded; each user's
jobs run as a user ID of that user's own, the same across jobs and restarts."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def server_flags():
    return "--home-size", "16M"


def run(server, command, user="alice"):
    return server.wait_final(server.start(command, user=user), user)


def test_a_home_is_kept_between_one_users_jobs(server):
    assert run(server, 'echo "from the first job" > "$HOME/kept"')["exitCode"] == 0
    assert run(server, 'cat "$HOME/kept"')["output"] == "from the first job\n"
    assert run(server, 'cat "$HOME/kept" 2>/dev/null || echo missing', user="bob")["output"] == "missing\n"


def test_no_other_user_can_reach_a_home(server):
    run(server, 'echo private > "$HOME/secret"')
    home = run(server, 'echo "$HOME"')["output"].strip()
    real = server.data_dir / "homes" / "alice"
    output = run(server, f"cat {home}/secret {real}/secret 2>&1; ls /home 2>&1", user="bob")["output"]
    assert "private" not in output and "alice" not in output.splitlines()[-1]


def test_a_full_home_fails_writes_and_touches_nothing_else(server):
    filled = run(server, 'head -c 40000000 /dev/zero > "$HOME/big"; echo "exit $?"; rm -f "$HOME/big"')
    assert "No space left on device" in filled["output"] and filled["output"].endswith("exit 1\n")
    assert run(server, 'echo fine > "$HOME/after" && cat "$HOME/after"', user="bob")["output"] == "fine\n"


def test_a_users_jobs_run_as_the_same_id_across_jobs_and_restarts(server_factory):
    server = server_factory()
    ids = {user: run(server, "id -u", user)["output"] for user in ("alice", "bob")}
    assert run(server, "id -u")["output"] == ids["alice"] and ids["alice"] != ids["bob"]
    server.stop()
    again = server_factory(data_dir=server.data_dir)
    assert {user: run(again, "id -u", user)["output"] for user in ("alice", "bob")} == ids
