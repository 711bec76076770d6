"""Nothing lost: records that survive restarts, retention, idempotent starts across restarts, a full disk."""

from __future__ import annotations

import subprocess

import pytest
from facilities import needs
from support import marker, poll_until, processes_with, reachable_by_jobs


def test_retention_keeps_only_the_newest_jobs_per_user(server_factory):
    server = server_factory("--retention-jobs", "2")
    jobs = [server.start(f"echo {number}") for number in range(4)]
    for job_id in jobs:
        server.wait_final(job_id)
    bobs = server.start("echo bobs", user="bob")
    server.wait_final(bobs, user="bob")
    poll_until(lambda: server.call("status", jobID=jobs[1]).status == 404, timeout=5, message="pruning")
    assert server.call("status", jobID=jobs[0]).status == 404
    assert [job["jobID"] for job in server.call("list").body["jobs"]] == [jobs[3], jobs[2]]
    assert server.status(bobs, user="bob")["output"] == "bobs\n"
    assert not (server.data_dir / "output" / jobs[0]).exists()
    assert (server.data_dir / "output" / jobs[3]).exists()


def test_retention_deletes_jobs_past_their_age_but_not_running_ones(server_factory):
    server = server_factory("--retention-days", "0.00002")  # under two seconds
    ended = server.start("echo old")
    server.wait_final(ended)
    running = server.start(f"sleep {marker()}")
    server.wait_running(running)
    poll_until(lambda: server.call("status", jobID=ended).status == 404, timeout=8, message="pruning")
    assert server.status(running)["status"] == "running"
    server.call("stop", jobID=running)


def test_an_idempotency_key_holds_across_a_restart(server_factory):
    server = server_factory()
    first = server.call("start", command="echo once", idempotencyKey="k-1").body["jobID"]
    server.stop()
    again = server_factory(data_dir=server.data_dir).call("start", command="echo once", idempotencyKey="k-1")
    assert again.body["jobID"] == first


def test_every_answered_start_survives_a_crash(server_factory):
    server = server_factory()
    mark = marker()
    started = [server.start(f"sleep {mark}") for _ in range(20)] + [server.start("true") for _ in range(20)]
    server.process.kill()
    server.process.wait()
    poll_until(lambda: not processes_with(mark))
    restarted = server_factory(data_dir=server.data_dir)
    statuses = {restarted.status(job_id)["status"] for job_id in started}
    assert statuses <= {"finished", "error"}


@pytest.fixture
def small_disk(tmp_path):
    mount_point = reachable_by_jobs(tmp_path) / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True)
    needs("root", None if mounted.returncode == 0 else f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_disk_loses_output_but_not_the_job_or_the_server(server_factory, small_disk):
    server = server_factory("--max-output-bytes", str(64 * 1024 * 1024), data_dir=small_disk / "data")
    job_id = server.start("echo first; head -c 8000000 /dev/zero; echo last")
    status = server.wait_final(job_id)
    assert status["status"] == "finished" and status["exitCode"] == 0
    assert "output lost: the disk is full" in status["reason"]
    assert status["output"].startswith("first\n")
    assert "released the space reserved for the records" in server.log()
    answer = server.call("start", command="true")
    assert answer.status in (200, 507), answer.body
    if answer.status == 507:
        assert "could not record the job" in answer.body["error"]
    assert server.call("list").status == 200
