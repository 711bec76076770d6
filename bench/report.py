"""Writing the results: the markdown tables with ratios, the targets, the README summary, and the raw figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.rounds import Round
from bench.stats import Spread
from bench.tables import CONTENDER_NAMES, TABLES, TARGETS, Table, Target

COMMAND = "python3 -m venv .venv && .venv/bin/python bench/run.py"


def _number(value: float) -> str:
    if math.isnan(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread_text(spread: Spread) -> str:
    if spread.missing:
        return "—"
    if spread.rounds == 1:
        return _number(spread.median)
    return f"{_number(spread.median)} ({_number(spread.low)}–{_number(spread.high)})"


def figure(rounds: list[Round], key: str) -> Spread:
    return Spread.of([round_.get(key) for round_ in rounds])


def ratio(rounds: list[Round], numerator: str, denominator: str) -> Spread:
    return Spread.of([round_.get(numerator) / round_.get(denominator) if round_.get(denominator) else math.nan
                      for round_ in rounds])


def target_spread(rounds: list[Round], target: Target) -> Spread:
    values = []
    for round_ in rounds:
        try:
            values.append(target.value(round_))
        except ZeroDivisionError:
            values.append(math.nan)
    return Spread.of(values)


def _verdict(target: Target, spread: Spread) -> str:
    if spread.missing:
        return "not measured"
    if target.met(spread.median):
        return "met" if target.met(spread.low) and target.met(spread.high) else "met (not in every round)"
    return "**missed**"


def _name(contender: str) -> str:
    return CONTENDER_NAMES.get(contender, contender)


def _table(table: Table, rounds: list[Round]) -> list[str]:
    others = [contender for contender in table.contenders if contender != "workerctl"]
    ratio_columns = others if "workerctl" in table.contenders else []
    header = ["measure", "unit", *(_name(c) for c in table.contenders),
              *(f"workerctl ÷ {_name(c)}" for c in ratio_columns)]
    lines = [f"### {table.title}", "", table.note, "", "| " + " | ".join(header) + " |",
             "|" + " --- |" * len(header)]
    for row in table.rows:
        cells = [row.label, row.unit]
        cells += [spread_text(figure(rounds, f"{row.measure}.{contender}")) for contender in table.contenders]
        cells += [spread_text(ratio(rounds, f"{row.measure}.workerctl", f"{row.measure}.{contender}"))
                  for contender in ratio_columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _targets_table(rounds: list[Round]) -> list[str]:
    lines = ["| | target | goal | measured | verdict |", "| --- | --- | --- | --- | --- |"]
    for number, target in enumerate(TARGETS, 1):
        spread = target_spread(rounds, target)
        measured = target.describe(spread.median)
        if spread.rounds > 1:
            measured += f" ({target.describe(spread.low)}–{target.describe(spread.high)})"
        lines.append(f"| T{number} | {target.name} | {target.goal} | {measured} | {_verdict(target, spread)} |")
    return lines


_ABOUT_ORDER = ("date", "workerctl", "machine", "kernel", "Python", "Tornado", "supervisor", "task-spooler", "rounds",
                "duration")


def _about_order(key: str) -> int:
    return _ABOUT_ORDER.index(key) if key in _ABOUT_ORDER else len(_ABOUT_ORDER)


def write_results(directory: Path, rounds: list[Round], about: dict[str, Any], notes: list[str]) -> None:
    """results.md, README-summary.md and results.json in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    failures = [failure for round_ in rounds for failure in round_.failures]
    lines = ["# Benchmark results", "",
             f"Reproduce from a checkout, as root: `{COMMAND}` (about 9 minutes on 2 cores). Every figure is the "
             f"median of {len(rounds)} rounds, with the lowest and highest round in brackets; in each round every "
             "contender was started fresh and measured in turn, the order rotating from round to round. Ratios are "
             "workerctl's figure divided by the other's within each round. Everything ran on 127.0.0.1.", "",
             "Run: " + ", ".join(f"{key} {about[key]}" for key in sorted(about, key=_about_order)) + ".", "",
             "![chart](chart.png)", "", "## Targets (issue 3)", "", *_targets_table(rounds), ""]
    if (directory / "analysis.md").exists():
        notes = [*notes, "Why the missed targets are missed, with profiles and what would fix them: "
                 "[analysis.md](analysis.md)."]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    lines += ["## Measurements", ""]
    for table in TABLES:
        lines += _table(table, rounds)
    if failures:
        lines += ["## Parts that failed in this run", "", *(f"- {failure}" for failure in failures), ""]
    (directory / "results.md").write_text("\n".join(lines))
    (directory / "README-summary.md").write_text("\n".join(_summary(rounds)) + "\n")
    (directory / "results.json").write_text(json.dumps(
        {"about": about, "rounds": [{"values": round_.values, "failures": round_.failures} for round_ in rounds]},
        indent=1, sort_keys=True) + "\n")


def read_results(directory: Path) -> tuple[list[Round], dict[str, Any]]:
    """The rounds and run details that write_results saved in results.json."""
    return read_results_file(directory / "results.json")


def read_results_file(path: Path) -> tuple[list[Round], dict[str, Any]]:
    saved = json.loads(path.read_text())
    rounds = []
    for index, stored in enumerate(saved["rounds"]):
        round_ = Round(index)
        round_.values = {key: float(value) for key, value in stored["values"].items()}
        round_.failures = list(stored["failures"])
        rounds.append(round_)
    return rounds, dict(saved["about"])


def _summary(rounds: list[Round]) -> list[str]:
    return ["## Benchmarks", "",
            f"`{COMMAND}` (as root, about 9 minutes on 2 cores) measures workerctl against what this machine can do "
            f"without a server and against task-spooler and supervisord, side by side, and writes "
            f"[docs/benchmarks/results.md](docs/benchmarks/results.md) and its chart. Last run, medians of "
            f"{len(rounds)} rounds (min–max):", "", *_targets_table(rounds)]
