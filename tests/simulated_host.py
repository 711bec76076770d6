"""A JobHost (workerctl.supervisor.host) whose processes are simulated, for the life cycle's unit tests: what
supervisord's DummyOptions is to its tests. Each process does what its `Program` says (writes output, exits,
ignores SIGTERM, forks as it is killed...) at times on the event loop's clock, which those tests make virtual
(virtual_time.py); and every call the supervisor makes is logged with the time it came, for the tests to check
what was done when.

Only a job's output pipe is real: the supervisor reads it as it reads a real job's, and it reaches end of file
once the job's last process has exited. So is a kept job's control connection to its keeper (live restore):
`keep_running` leaves a job running under a simulated keeper, as an earlier run of the supervisor left it, and
`keeper_says` sends what a keeper would.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass

from workerctl.store.interface import JobRecord
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import JobScope
from workerctl.supervisor.exits import Exit
from workerctl.supervisor.host import Started, TakenBack
from workerctl.supervisor.keepers import Attachment, Ended, Ending, control_pair
from workerctl.supervisor.limits import JobLimits, Usage

USAGE = Usage(cpu_seconds=1.5, peak_memory_bytes=3 * 2**20)  # what every job is said to have used


@dataclass(frozen=True)
class Program:
    """What a simulated process does."""

    output: bytes = b""  # written as it starts
    runs_for: float | None = None  # then it exits of itself, with `exit_code`; None: until a signal ends it
    exit_code: int = 0
    children: tuple[Program, ...] = ()  # started with it
    ignores_sigterm: bool = False
    on_sigterm: Program | None = None  # started as SIGTERM comes, which the process then exits 0 on (a trap)
    forks_when_killed: int = 0  # SIGKILLs that each find a child it forked a moment before (a fork loop)
    killed_by_memory_limit: bool = False  # at the end of `runs_for`, the kernel's OOM killer takes it
    cannot_start: bool = False  # its spawn fails


@dataclass(eq=False)
class SimulatedProcess:
    pid: int
    program: Program
    job_id: str
    alive: bool = True
    exit: Exit | None = None
    reaped: bool = False


@dataclass(eq=False)
class _Job:
    id: str
    output_fd: int | None  # the write end of its output pipe, closed with its last process
    memory_kills: int = 0
    keeper: socket.socket | None = None  # the keeper's end of its control connection, while it is kept
    kept_ending: Ended | None = None  # how its keeper recorded its end


Event = tuple[float, str, object]  # (when, what, of which job or process)


class SimulatedHost:
    """A JobHost whose jobs run `programs`, chosen by their command; `events` holds every call made of it and
    every process's exit, each with the time it came."""

    def __init__(self, programs: dict[str, Program]) -> None:
        self.programs = programs  # by command
        self.events: list[Event] = []
        self.processes: dict[int, SimulatedProcess] = {}
        self._jobs: dict[str, _Job] = {}
        self._watchers: dict[int, Callable[[], None]] = {}
        self._next_pid = 1000
        self._reading_ends: dict[str, int] = {}  # of kept jobs' output pipes
        self._controls: dict[str, socket.socket] = {}  # the supervisor's ends of kept jobs' control connections
        self._spools: dict[str, bytes] = {}
        self._elapsed: dict[str, float] = {}

    # --- what the supervisor calls ---------------------------------------------------------------------------

    def start(self, record: JobRecord, user: JobUser, limits: JobLimits,
              main_unreaped: Callable[[], bool]) -> Started:
        program = self.programs[record.command]
        if program.cannot_start:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._jobs[record.id] = job = _Job(record.id, write_end)
        self.note("start", record.id)
        main = self._spawn(program, job)
        return Started(main.pid, read_end, SimulatedScope(self, [record.id]), lambda: self.note("release", record.id))

    def watch_exit(self, pid: int, on_exit: Callable[[], None]) -> Callable[[], None] | None:
        self._watchers[pid] = on_exit
        return lambda: self._watchers.pop(pid)

    def reap(self) -> list[Exit]:
        exits = [process.exit for process in self.processes.values() if process.exit and not process.reaped]
        for exit in exits:
            self.processes[exit.pid].reaped = True
        return exits

    def kill(self, pid: int) -> None:
        self.note("SIGKILL", pid)
        self.deliver(self.processes[pid], signal.SIGKILL)

    def usage(self, owner: str, job_id: str) -> Usage:
        self.note("usage", job_id)
        return USAGE

    def memory_kills(self, owner: str, job_id: str) -> int:
        return self._jobs[job_id].memory_kills

    def lease_held(self) -> bool:
        return True

    def take_back(self, record: JobRecord, main_unreaped: Callable[[], bool]) -> TakenBack | Ended:
        self.note("take back", record.id)
        job = self._jobs.get(record.id)
        if job is None or job.keeper is None:
            return job.kept_ending if job is not None and job.kept_ending else Ended(None, Ending.NONE, b"")
        read_end = self._reading_ends.pop(record.id)
        control = self._controls.pop(record.id)
        attachment = Attachment(control, self.alive(record.id)[0].pid, read_end, self._spools.pop(record.id),
                                self._elapsed.pop(record.id), Ending.NONE)
        return TakenBack(attachment, SimulatedScope(self, [record.id]), lambda: self.note("release", record.id))

    def keeper_ended(self, record: JobRecord) -> Ended:
        ending = self._jobs[record.id].kept_ending
        return ending if ending is not None else Ended(None, Ending.NONE, b"")

    def release_kept(self, record: JobRecord) -> None:
        self.note("release kept", record.id)

    def leftovers(self, job_ids: Collection[str]) -> JobScope:
        return SimulatedScope(self, job_ids)

    def release_leftovers(self, job_ids: Collection[str]) -> None:
        self.note("release leftovers", sorted(job_ids))

    # --- for the tests ----------------------------------------------------------------------------------------

    def leave_behind(self, job_id: str, program: Program) -> SimulatedProcess:
        """A process an earlier run of the supervisor left running for the job `job_id`."""
        return self._spawn(program, self._jobs.setdefault(job_id, _Job(job_id, None)))

    def keep_running(self, job_id: str, program: Program, elapsed: float, spool: bytes) -> SimulatedProcess:
        """A job an earlier run of the supervisor left running under its keeper, started `elapsed` seconds ago,
        whose keeper spooled `spool` meanwhile."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        control, keeper = control_pair()
        control.setblocking(False)
        self._jobs[job_id] = job = _Job(job_id, write_end, keeper=keeper)
        self._reading_ends[job_id], self._controls[job_id] = read_end, control
        self._spools[job_id], self._elapsed[job_id] = spool, elapsed
        return self._spawn(program, job)

    def ended_while_away(self, job_id: str, ending: Ended) -> None:
        """A job whose keeper recorded its end while no supervisor ran."""
        self._jobs[job_id] = _Job(job_id, None, kept_ending=ending)

    def keeper_says(self, job_id: str, message: bytes) -> None:
        keeper = self._jobs[job_id].keeper
        assert keeper is not None
        keeper.send(message)

    def alive(self, job_id: str) -> list[SimulatedProcess]:
        return [process for process in self.processes.values() if process.job_id == job_id and process.alive]

    def when(self, what: str, of: object) -> list[float]:
        """The times of the events `what` of `of`."""
        return [time for time, event, subject in self.events if (event, subject) == (what, of)]

    # --- the simulation ---------------------------------------------------------------------------------------

    def deliver(self, process: SimulatedProcess, sig: signal.Signals) -> None:
        if not process.alive:
            return
        program = process.program
        if sig is signal.SIGKILL:
            if program.forks_when_killed:
                forked = Program(ignores_sigterm=program.ignores_sigterm,
                                 forks_when_killed=program.forks_when_killed - 1)
                self._spawn(forked, self._jobs[process.job_id])
            self._exit(process, Exit(process.pid, None, signal.SIGKILL))
        elif not program.ignores_sigterm:
            if program.on_sigterm is None:
                self._exit(process, Exit(process.pid, None, signal.SIGTERM))
            else:
                self._spawn(program.on_sigterm, self._jobs[process.job_id])
                self._exit(process, Exit(process.pid, 0, None))

    def _spawn(self, program: Program, job: _Job) -> SimulatedProcess:
        process = SimulatedProcess(self._next_pid, program, job.id)
        self._next_pid += 1
        self.processes[process.pid] = process
        if program.output and job.output_fd is not None:
            os.write(job.output_fd, program.output)
        if program.runs_for is not None:
            asyncio.get_running_loop().call_later(program.runs_for, self._run_out, process)
        for child in program.children:
            self._spawn(child, job)
        return process

    def _run_out(self, process: SimulatedProcess) -> None:
        if not process.alive:
            return
        if process.program.killed_by_memory_limit:
            self._jobs[process.job_id].memory_kills += 1
            self._exit(process, Exit(process.pid, None, signal.SIGKILL))
        else:
            self._exit(process, Exit(process.pid, process.program.exit_code, None))

    def _exit(self, process: SimulatedProcess, exit: Exit) -> None:
        process.alive, process.exit = False, exit
        self.note("exit", process.pid)
        job = self._jobs[process.job_id]
        if not self.alive(job.id) and job.output_fd is not None:  # the last writer of its output is gone
            os.close(job.output_fd)
            job.output_fd = None
        if not self.alive(job.id) and job.keeper is not None:  # and its keeper records how the job ended, and exits
            job.kept_ending = Ended(exit, Ending.NONE, b"")
            job.keeper.close()
            job.keeper = None
        on_exit = self._watchers.get(process.pid)
        if on_exit is not None:  # its pidfd becomes readable: the loop calls the watcher on its next turn
            asyncio.get_running_loop().call_soon(on_exit)

    def note(self, what: str, of: object) -> None:
        self.events.append((asyncio.get_running_loop().time(), what, of))


class SimulatedScope(JobScope):
    """The live processes of the jobs `job_ids`: one job's, or those an earlier run left of several."""

    def __init__(self, host: SimulatedHost, job_ids: Collection[str]) -> None:
        self.host = host
        self.job_ids = job_ids

    def processes(self) -> list[SimulatedProcess]:  # type: ignore[override]
        return [process for job_id in self.job_ids for process in self.host.alive(job_id)]

    def send_sigterm(self, processes: list[SimulatedProcess], whole_group: bool) -> None:  # type: ignore[override]
        # The job's process group is not simulated: whoever is in it gets the signal one by one.
        for process in processes:
            self.host.note("SIGTERM", process.pid)
            self.host.deliver(process, signal.SIGTERM)

    def kill_all(self) -> None:
        for process in self.processes():
            self.host.note("SIGKILL", process.pid)
            self.host.deliver(process, signal.SIGKILL)

    def release(self) -> None:
        self.host.note("scope released", sorted(self.job_ids))
