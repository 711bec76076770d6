"""The job keeper: the sandbox helper's outer process with -k, which keeps a job while no supervisor is attached
(its output spooled, its time limit enforced, its end recorded), ends it when its supervisor is lost (without -r)
or the host's lease lapses, and lets a later supervisor attach. The helper is driven directly, as root, with the
descriptors a supervisor would hand it."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import marker, poll_until, require_namespaces, wait_none_left
from workerctl.supervisor.sandbox import HELPER, SYSTEM_PATHS

require_namespaces()

NOBODY = 65534
HOME_INSIDE = "/home/job"
HELLO = struct.Struct("=QQii")  # spool_bytes, elapsed_ns, keeper_pid, ending
NOT_ENDING = 0
# A job that says it has started, then runs until told to end; on SIGTERM it says so and exits with 7 (waiting
# on its sleep, so that the shell runs its trap at once; it may first report the sleep's death by the signal).
TRAPPED = "trap 'echo TERM; exit 7' TERM; echo ready; while :; do sleep 0.05 & wait $!; done"
DEADLINE = 10.0  # seconds, for what a test waits on; every wait ends as soon as its condition holds
GRACE_MS = 10_000  # a grace that a test never waits out


def boottime() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def lease_bytes(deadline: int) -> bytes:
    return struct.pack("=qq", deadline, ~deadline)


@dataclass
class Job:
    process: subprocess.Popen[bytes]
    control: socket.socket | None  # the supervisor's end of the control connection
    output: int | None  # the supervisor's copy of the output pipe's read end, non-blocking
    directory: Path | None  # -r's
    home: Path
    read: bytes = b""  # what has been read from `output`

    def detach(self) -> None:
        """Be a supervisor that goes away: close the control connection and the pipe."""
        assert self.control is not None and self.output is not None
        self.control.close()
        os.close(self.output)
        self.control = self.output = None

    def read_until(self, wanted: bytes, fd: int | None = None) -> bytes:
        """Read the output pipe (or `fd`) until what it gave holds `wanted`, or to its end if `wanted` is empty."""
        fd = self.output if fd is None else fd
        got = b""
        deadline = time.monotonic() + DEADLINE
        while not wanted or wanted not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {wanted!r} in the job's output: {got!r}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                got += chunk
        if fd == self.output:
            self.read += got
        return got

    def wait(self) -> int:
        return self.process.wait(timeout=DEADLINE)

    def exit_record(self) -> str:
        assert self.directory is not None
        return (self.directory / "exit").read_text()

    def spooled(self) -> bytes:
        assert self.directory is not None
        spool = self.directory / "spool"
        return spool.read_bytes() if spool.exists() else b""


def attach(job: Job) -> tuple[socket.socket, tuple[int, int, int, int], list[int]]:
    """Be a supervisor that attaches: connect to the keeper's socket; the connection, the hello and its fds."""
    assert job.directory is not None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.settimeout(DEADLINE)
        connection.connect(str(job.directory / "keeper.sock"))
        message, fds, _, _ = socket.recv_fds(connection, 64, 1)
    except BaseException:
        connection.close()
        raise
    return connection, HELLO.unpack(message), fds


@dataclass
class Jobs:
    tmp_path: Path
    started: list[Job] = field(default_factory=list)

    def start(self, command: str, keeper: bool = True, restore: bool = False, grace_ms: int | None = None,
              lease: Path | None = None, time_limit_ms: int = 60_000, cap: int | None = None,
              extra: tuple[str, ...] = ()) -> Job:
        """Start the helper on `command`, run as "nobody" in a sandbox with its home at HOME_INSIDE, as a
        supervisor would (its options in a memory file, its output into a pipe), with -k and so on as asked."""
        home = Path(tempfile.mkdtemp(dir=self.tmp_path))
        os.chown(home, NOBODY, NOBODY)
        options = ["-n", *(option for path in SYSTEM_PATHS for option in ("-R", path)),
                   "-b", f"{home}:{HOME_INSIDE}", "-u", str(NOBODY), "-g", str(NOBODY), "-d", HOME_INSIDE]
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        passed = []
        control = directory = None
        if keeper:
            control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            options += ["-k", str(theirs.fileno())]
            passed.append(theirs.detach())
        if grace_ms is not None:
            options += ["-G", str(grace_ms)]
        if lease is not None:
            lease_fd = os.open(lease, os.O_RDONLY | os.O_CLOEXEC)
            options += ["-l", str(lease_fd)]
            passed.append(lease_fd)
        if restore:
            directory = Path(tempfile.mkdtemp(prefix="wk-"))  # 0700, root's; short, for the socket's path
            options += ["-r", str(directory), "-O", str(read_end), "-T", str(time_limit_ms)]
            passed.append(read_end)
        if cap is not None:
            options += ["-P", str(cap)]
        options += [*extra, "--", "/bin/sh", "-c", command]
        options_fd = os.memfd_create("workerctl-job", os.MFD_CLOEXEC)
        os.write(options_fd, b"".join(option.encode() + b"\0" for option in options))
        try:
            process = subprocess.Popen([str(HELPER), "-f", str(options_fd)], stdin=subprocess.DEVNULL,
                                       stdout=write_end, stderr=subprocess.STDOUT, env={}, cwd="/",
                                       pass_fds=(options_fd, *passed), start_new_session=True)
        finally:
            for fd in (options_fd, write_end, *passed):
                if fd != read_end:
                    os.close(fd)
        os.set_blocking(read_end, False)  # as the supervisor's is
        job = Job(process, control, read_end, directory, home)
        self.started.append(job)
        return job

    def end(self) -> None:
        for job in self.started:
            with contextlib.suppress(ProcessLookupError):  # the group, even where the keeper has gone
                os.killpg(job.process.pid, signal.SIGKILL)
            job.process.wait()
            if job.control is not None:
                job.control.close()
            if job.output is not None:
                os.close(job.output)
            if job.directory is not None:
                for entry in job.directory.iterdir():
                    entry.unlink()
                job.directory.rmdir()


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    started = Jobs(tmp_path)
    yield started
    started.end()


def wait_for(condition: Callable[[], object], message: str) -> object:
    return poll_until(condition, DEADLINE, message=message)


# --- without a keeper ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, returncode", [("echo out; exit 3", 3), ("kill -USR1 $$", -signal.SIGUSR1)])
def test_without_k_the_helper_ends_as_the_job_did(jobs, command, returncode):
    job = jobs.start(command, keeper=False)
    assert job.wait() == returncode
    assert job.read_until(b"") == (b"out\n" if "echo" in command else b"")


# --- -k without -r: the job ends with its supervisor -------------------------------------------------------------

def test_a_lost_supervisor_ends_the_job_with_sigterm_first(jobs):
    job = jobs.start(TRAPPED, grace_ms=GRACE_MS)
    job.read_until(b"ready\n")
    job.control.close()
    assert job.read_until(b"").endswith(b"TERM\n")  # to the end of the pipe: the helper has gone too
    assert job.wait() == 7


def test_a_lost_supervisor_ends_a_job_that_ignores_sigterm_with_sigkill_after_the_grace(jobs):
    job = jobs.start("trap '' TERM; echo ready; while :; do sleep 0.05; done", grace_ms=500)
    job.read_until(b"ready\n")
    lost = time.monotonic()
    job.control.close()
    assert job.wait() == -signal.SIGKILL
    assert time.monotonic() - lost >= 0.5


def test_a_keeper_killed_takes_its_job_with_it(jobs):
    mark = marker()
    job = jobs.start(f"echo ready; sleep {mark}")
    job.read_until(b"ready\n")
    os.kill(job.process.pid, signal.SIGKILL)  # the keeper alone, not its group
    assert job.wait() == -signal.SIGKILL
    wait_none_left(mark, DEADLINE)


# --- -r: live restore --------------------------------------------------------------------------------------------

def line_numbers(output: bytes) -> list[int]:
    """The numbers of the job's whole lines "line N"."""
    return [int(line.split()[1]) for line in output.decode().split("\n")[:-1]]


def test_output_spooled_while_detached_and_the_pipe_handed_on_make_every_line_once_in_order(jobs):
    job = jobs.start("i=0; while [ $i -lt 1000 ]; do i=$((i + 1)); echo line $i; sleep 0.05; done", restore=True)
    job.read_until(b"line 3\n")
    before = job.read
    job.detach()
    wait_for(lambda: job.spooled().count(b"\n") >= 3, "the keeper to spool the job's output")
    connection, (spool_bytes, _, keeper_pid, ending), fds = attach(job)
    assert (keeper_pid, ending, len(fds)) == (job.process.pid, NOT_ENDING, 1)
    spooled = job.spooled()[:spool_bytes]
    connection.send(b"c")  # consumed
    wait_for(lambda: (job.directory / "spool").stat().st_size == 0, "the keeper to empty the spool")
    after = job.read_until(f"line {line_numbers(before + spooled)[-1] + 3}\n".encode(), fds[0])
    numbers = line_numbers(before + spooled + after)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 9, (before, spooled, after)
    connection.close()
    os.close(fds[0])


def test_a_job_that_ends_while_detached_leaves_its_status_and_last_output(jobs):
    job = jobs.start("echo ready; while [ ! -e go ]; do sleep 0.01; done; echo last words; exit 3", restore=True)
    job.read_until(b"ready\n")
    job.detach()
    (job.home / "go").touch()
    assert job.wait() == 3
    assert job.exit_record() == "status 768\nended-by none\n"
    assert job.spooled() == b"last words\n"
    assert sorted(entry.name for entry in job.directory.iterdir()) == ["exit", "spool"]
    with pytest.raises(OSError):
        attach(job)


def test_the_spool_stops_at_its_cap_while_the_job_runs_and_takes_the_rest_as_it_ends(jobs):
    job = jobs.start("echo ready; while [ ! -e go ]; do sleep 0.01; done; head -c 300 /dev/zero | tr '\\0' x; "
                     "while [ ! -e go2 ]; do sleep 0.01; done; head -c 300 /dev/zero | tr '\\0' y", restore=True,
                     cap=100)
    job.read_until(b"ready\n")
    job.detach()
    (job.home / "go").touch()
    assert wait_for(lambda: len(job.spooled()) >= 100, "the spool to fill") and len(job.spooled()) == 100
    connection, (spool_bytes, _, _, _), fds = attach(job)
    assert spool_bytes == 100  # the keeper has taken no more from the pipe
    connection.close()  # detached again, and the spool still full: the rest waits in the pipe
    os.close(fds[0])
    (job.home / "go2").touch()
    assert job.wait() == 0
    assert job.spooled() == b"x" * 300 + b"y" * 300


def test_the_time_limit_ends_a_detached_job(jobs):
    started = time.monotonic()
    job = jobs.start(TRAPPED, restore=True, time_limit_ms=300, grace_ms=GRACE_MS)
    job.read_until(b"ready\n")
    job.detach()
    assert job.wait() == 7
    assert time.monotonic() - started >= 0.3
    assert job.exit_record() == "status 1792\nended-by time-limit\n"
    assert job.spooled().endswith(b"TERM\n")


def test_the_time_limit_waits_while_attached_and_a_hello_counts_from_the_start(jobs):
    started = boottime()
    job = jobs.start(TRAPPED, restore=True, time_limit_ms=300, grace_ms=GRACE_MS)
    job.read_until(b"ready\n")
    ready = boottime()
    attached = job.control
    elapsed = 0
    deadline = time.monotonic() + DEADLINE
    while elapsed < 400_000_000:  # past the limit, attached all along: each supervisor takes over from the last
        assert time.monotonic() < deadline, "the keeper's elapsed time never passed the limit"
        connecting = boottime()
        connection, (_, elapsed, _, ending), fds = attach(job)
        assert connecting - ready <= elapsed <= boottime() - started
        assert ending == NOT_ENDING and job.process.poll() is None
        attached.close()
        os.close(fds[0])
        attached = connection
    job.control = attached
    job.control.close()  # detached past the limit: the keeper ends the job at once
    job.control = None
    assert job.wait() == 7
    assert job.exit_record() == "status 1792\nended-by time-limit\n"


# --- -l: the lease -----------------------------------------------------------------------------------------------

def test_a_lapsing_lease_ends_the_job_after_telling_the_supervisor(jobs, tmp_path):
    lease = tmp_path / "lease"
    deadline = boottime() + 300_000_000
    lease.write_bytes(lease_bytes(deadline))
    job = jobs.start(TRAPPED, lease=lease, grace_ms=GRACE_MS)
    job.read_until(b"ready\n")
    job.control.settimeout(DEADLINE)
    assert job.control.recv(16) == b"F"
    assert boottime() >= deadline
    assert job.wait() == 7  # ended by SIGTERM, within the grace
    assert job.read_until(b"").endswith(b"TERM\n")


def test_a_lease_kept_moving_forward_holds_and_once_it_stops_the_job_is_fenced(jobs, tmp_path):
    lease = tmp_path / "lease"
    lease.write_bytes(lease_bytes(boottime() + 500_000_000))
    job = jobs.start(TRAPPED, restore=True, lease=lease, grace_ms=GRACE_MS)
    job.read_until(b"ready\n")
    renewing = os.open(lease, os.O_WRONLY)
    first = boottime() + 500_000_000
    job.control.settimeout(0.05)  # as an agent renews its lease, while watching for a fence that must not come
    while boottime() < first + 500_000_000:
        with pytest.raises(TimeoutError):
            job.control.recv(16)
        deadline = boottime() + 500_000_000
        os.pwrite(renewing, lease_bytes(deadline), 0)  # in place, as the agent writes it
    os.close(renewing)
    assert job.process.poll() is None
    job.control.settimeout(DEADLINE)
    assert job.control.recv(16) == b"F"
    assert boottime() >= deadline
    assert job.wait() == 7
    assert job.exit_record() == "status 1792\nended-by fence\n"


@pytest.mark.parametrize("content", [lease_bytes(2**62)[:12], struct.pack("=qq", 2**62, 2**62), b""],
                         ids=["short", "torn", "empty"])
def test_a_lease_that_cannot_be_read_whole_has_lapsed(jobs, tmp_path, content):
    lease = tmp_path / "lease"
    lease.write_bytes(content)
    job = jobs.start(TRAPPED, lease=lease, grace_ms=GRACE_MS)
    job.control.settimeout(DEADLINE)
    assert job.control.recv(16) == b"F"
    job.wait()


# --- what the job sees, and what is refused ---------------------------------------------------------------------

def test_no_descriptor_of_the_keepers_reaches_the_job(jobs, tmp_path):
    lease = tmp_path / "lease"
    lease.write_bytes(lease_bytes(boottime() + 3600 * 10**9))
    job = jobs.start("ls -l /proc/$$/fd/", restore=True, lease=lease)  # the job's shell's: what it inherited
    assert job.wait() == 0
    listing = job.read_until(b"")
    descriptors = {int(line.split()[-3]): line.split()[-1] for line in listing.decode().splitlines()[1:]}
    assert descriptors.keys() == {0, 1, 2} and descriptors[0] == "/dev/null", listing


@pytest.mark.parametrize("options, refusal", [
    (("-k", "{control}"), "-k needs -n"),
    (("-n", "-l", "{pipe}"), "-G, -l and -r need -k"),
    (("-n", "-G", "5"), "-G, -l and -r need -k"),
    (("-n", "-k", "{control}", "-O", "{pipe}"), "-O, -T and -P need -r"),
    (("-n", "-k", "{control}", "-T", "5"), "-O, -T and -P need -r"),
    (("-n", "-k", "{control}", "-r", "{directory}", "-O", "{pipe}"), "-r needs -O and -T"),
    (("-n", "-k", "{control}", "-r", "{directory}", "-T", "5"), "-r needs -O and -T")],
    ids=["-k without -n", "-l without -k", "-G without -k", "-O without -r", "-T without -r", "-r without -T",
         "-r without -O"])
def test_the_helper_refuses_keeper_options_out_of_place(tmp_path, options, refusal):
    """Each refused as it stands, with descriptors and a directory that would do: a supervisor must not take a
    job for kept, or fenced, when it is not."""
    directory = tmp_path / "keeper"
    directory.mkdir(mode=0o700)
    read_end, write_end = os.pipe()
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with control, theirs:
        arguments = [option.format(control=theirs.fileno(), pipe=read_end, directory=directory) for option in options]
        done = subprocess.run([str(HELPER), *arguments, "-u", str(NOBODY), "-g", str(NOBODY), "--", "/bin/echo", "ran"],
                              capture_output=True, text=True, env={}, cwd="/", start_new_session=True,
                              pass_fds=(theirs.fileno(), read_end))
    os.close(read_end)
    os.close(write_end)
    assert done.returncode == 125 and refusal in done.stderr and done.stdout == "", done
    assert list(directory.iterdir()) == []


def test_the_keeper_refuses_a_directory_not_roots_alone_an_output_not_a_pipe_and_a_process_group_not_its_own(
        jobs, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    job = jobs.start("echo ran", extra=("-r", str(shared), "-O", "0", "-T", "5"))
    assert job.wait() == 125 and b"not root's alone" in job.read_until(b"")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    job = jobs.start("echo ran", extra=("-r", str(private), "-O", "0", "-T", "5"))  # 0 is /dev/null
    assert job.wait() == 125 and b"the job's output pipe" in job.read_until(b"")
    assert list(shared.iterdir()) == []
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with control, theirs:
        done = subprocess.run([str(HELPER), "-n", "-k", str(theirs.fileno()), "-u", str(NOBODY), "-g", str(NOBODY),
                               "--", "/bin/echo", "ran"], capture_output=True, text=True, env={}, cwd="/",
                              pass_fds=(theirs.fileno(),))
    assert done.returncode == 125 and "process group of its own" in done.stderr and done.stdout == "", done
