"""What each step of a job's first process costs, with no server: `python -m bench.sandbox_steps` (as root).

It spawns each first process below 200 times (--spawns), in turns so that whatever else the machine does falls
on every one alike, and takes the median wall time of each `subprocess.run` (start, read its output to the
end, reap); it does so in 5 rounds (--rounds) and prints, as a Markdown table in ms, the median of the rounds'
medians with the lowest and highest round, for:

- `/bin/sh -c true` alone, as root: what any job costs;
- the sandbox helper without namespaces (`--sandbox off`), with the seccomp filter and without;
- the helper with the whole sandbox (namespaces, the root it builds, /proc and its masks, the tmpfs mounts, the
  home's bind, the filter), with the host's network and with a network namespace (`--network none`, the
  default), and the latter without the filter;

then what the sandbox and seccomp add, taken within each round: the whole sandbox (`--network none`) over the
helper without namespaces, and the filter's own cost with namespaces and without.

Each helper's command line, options and environment are the supervisor's own (Sandbox.first_process, and
spawner.job_environment), built for a job `sh -c true` run as user and group 65534 in a home made for it in a
temporary directory, with the seccomp filter of seccomp.job_filter, joining one cgroup (every job joins its
own) and started with the supervisor's Popen options. Nothing is covered (-H), as in the benchmark, whose
servers keep their files under /tmp, outside the system paths.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.floors import cgroup_parent
from bench.stats import Spread, percentile
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.sandbox import HELPER, SHELL, JobPlan, Sandbox
from workerctl.supervisor.seccomp import job_filter
from workerctl.supervisor.spawner import job_environment

SPAWNS = 200
ROUNDS = 5
WARM_UP = 5  # spawns of each before the timed ones: page cache, the helper's pages, the kernel's slabs
JOB_ID = 65534  # the job's user and group (nobody's: the supervisor's start-up probe runs its job as it)
COMMAND = "true"


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    sandbox: Sandbox | None  # None: the shell alone, no helper
    network_ahead: bool = True  # a network namespace made ahead and kept, as the supervisor gives its jobs


def _steps(seccomp: int) -> list[Step]:
    def helper(namespaces: bool, network: str, with_filter: bool) -> Sandbox:
        sandbox = Sandbox(namespaces, network, (), HELPER, seccomp if with_filter else None)
        sandbox.make_networks_ahead()
        return sandbox

    return [
        Step("shell", "`/bin/sh -c true` alone", None),
        Step("bare", "the helper without namespaces (`--sandbox off`): join, switch user, seccomp, `sh -c true`",
             helper(False, "none", True)),
        Step("bare-off", "the same, seccomp off", helper(False, "none", False)),
        Step("host-network", "the helper with the whole sandbox, the host's network (`--network host`)",
             helper(True, "host", True)),
        Step("whole", "the same with a network namespace of its own (`--network none`, the default), made ahead "
             "and kept for the user's next job", helper(True, "none", True)),
        Step("whole-own", "the same, the network namespace made by the helper itself (where none is at hand)",
             helper(True, "none", True), network_ahead=False),
        Step("whole-off", "the same as the default, seccomp off", helper(True, "none", False)),
    ]


# What the sandbox and the filter add: one step's median less another's, within each round.
DIFFERENCES = (("the whole sandbox (`--network none`) over the helper without namespaces", "whole", "bare"),
               ("a network namespace made by the helper, over one made ahead", "whole-own", "whole"),
               ("seccomp, with the whole sandbox", "whole", "whole-off"),
               ("seccomp, without namespaces", "bare", "bare-off"))


@contextmanager
def _command_line(step: Step, plan: JobPlan) -> Iterator[tuple[list[str], dict[str, str], Path, tuple[int, ...]]]:
    """The step's argv, environment, directory and inherited descriptors, valid inside the block."""
    if step.sandbox is None:
        yield [SHELL, "-c", COMMAND], {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, Path("/"), ()
        return
    environment = job_environment("bench", "bench", plan, step.sandbox, None, {})
    network = step.sandbox.network_for(plan.owner) if step.network_ahead else None
    try:
        with step.sandbox.first_process(plan, environment, network) as first:
            yield first.argv, first.environment, first.directory, first.pass_fds
    finally:
        step.sandbox.network_done(plan.owner, network)


def _spawn_ms(step: Step, plan: JobPlan) -> float:
    """One spawn of the step's first process, as the supervisor spawns a job, in ms; RuntimeError if it fails."""
    with _command_line(step, plan) as (argv, environment, directory, pass_fds):
        began = time.perf_counter()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd=directory, env=environment, pass_fds=pass_fds, start_new_session=True,
                              umask=0o077)
        elapsed = (time.perf_counter() - began) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{step.label}: exit status {done.returncode}: {done.stdout.decode(errors='replace')}")
    return elapsed


def measure(spawns: int) -> list[tuple[Step, list[float]]]:
    """Each step's spawn times in ms, taken in turns."""
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="workerctl-steps-")))
        scratch.chmod(0o711)  # without namespaces, the job enters its home on the host
        home = scratch / "home"
        home.mkdir(mode=0o700)
        os.chown(home, JOB_ID, JOB_ID)
        cgroup = stack.enter_context(cgroup_parent("workerctl-steps"))
        joins = () if cgroup is None else (cgroup / "cgroup.procs",)
        plan = JobPlan(COMMAND, "bench", JobUser("nobody", JOB_ID, JOB_ID), home, joins)
        seccomp = job_filter()
        stack.callback(os.close, seccomp)
        steps = _steps(seccomp)
        for _ in range(WARM_UP):
            for step in steps:
                _spawn_ms(step, plan)
        times: list[list[float]] = [[] for _ in steps]
        for _ in range(spawns):
            for step, samples in zip(steps, times):
                samples.append(_spawn_ms(step, plan))
    return list(zip(steps, times))


def _cell(spread: Spread) -> str:
    return f"{spread.median:.2f} ({spread.low:.2f}–{spread.high:.2f})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_steps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=SPAWNS, help=f"spawns of each a round (default {SPAWNS})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds (default {ROUNDS})")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.sandbox_steps: run as root: the helper switches to the job's user", file=sys.stderr)
        return 1
    if not os.access(HELPER, os.X_OK):
        print(f"bench.sandbox_steps: the sandbox helper {HELPER} was not built", file=sys.stderr)
        return 1
    medians: list[dict[str, float]] = []  # a round's median of each step, by key
    labels: dict[str, str] = {}
    for _ in range(options.rounds):
        results = measure(options.spawns)
        medians.append({step.key: percentile(samples, 0.5) for step, samples in results})
        labels = {step.key: step.label for step, _ in results}
    print(f"{options.rounds} rounds of {options.spawns} spawns of each, in turns, on {os.cpu_count()} cores: the "
          "median of the rounds' medians, with the lowest and highest round, in ms\n")
    print("| first process | ms |\n| --- | --- |")
    for key, label in labels.items():
        print(f"| {label} | {_cell(Spread.of([round_[key] for round_ in medians]))} |")
    print("\n| what it adds | ms |\n| --- | --- |")
    for label, more, less in DIFFERENCES:
        print(f"| {label} | {_cell(Spread.of([round_[more] - round_[less] for round_ in medians]))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
