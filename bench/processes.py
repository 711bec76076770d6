"""Looking at processes from outside: memory and CPU of a set of them, waiting for a line in a log, watching
many processes end at once, and stopping one."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

MIB = 1024 * 1024


def total_rss(processes: Iterable[psutil.Process]) -> int:
    """Resident memory of the processes together, in bytes (processes that are gone count nothing)."""
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def total_cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_percent: float  # of one core, averaged over the window


def usage_over(processes: list[psutil.Process], seconds: float) -> Usage:
    """The processes' RSS at the end of a window of `seconds`, and the CPU they used during it."""
    before = total_cpu_seconds(processes)
    began = time.monotonic()
    time.sleep(seconds)
    used = total_cpu_seconds(processes) - before
    return Usage(total_rss(processes), 100 * used / (time.monotonic() - began))


def wait_for_log(path: Path, pattern: str, timeout: float, alive: Callable[[], bool]) -> re.Match[str]:
    """The first match of `pattern` in the log file; RuntimeError if it does not come in time."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found
        if not alive():
            raise RuntimeError(f"the process writing {path} exited; its log ends:\n{text[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {pattern!r} in {path} after {timeout:g} s; the log ends:\n{text[-2000:]}")
        time.sleep(0.02)


def watch_exits(pids: Iterable[int], timeout: float) -> dict[int, float]:
    """Wait until each process has exited (zombies count as exited), at most `timeout` seconds; the wall-clock
    time each was seen to exit. A pidfd becomes readable the moment its process exits, so this costs no polling."""
    poller = select.epoll()
    by_fd: dict[int, int] = {}
    exits: dict[int, float] = {}
    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                exits[pid] = time.time()
                continue
            by_fd[fd] = pid
            poller.register(fd, select.EPOLLIN)
        pending = set(by_fd)
        deadline = time.monotonic() + timeout
        while pending and (remaining := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(remaining):
                exits[by_fd[fd]] = time.time()
                poller.unregister(fd)
                pending.discard(fd)
    finally:
        for fd in by_fd:
            os.close(fd)
        poller.close()
    return exits


def terminate(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGTERM the process and wait at most `seconds` for it to exit, then kill it; whether it exited in time (one
    already gone did)."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
