"""Two benchmark runs side by side: `python -m bench.compare BEFORE.json AFTER.json` prints, as markdown, every
target and every measured figure of both runs (medians, with the lowest and highest round), so a change can be
read against the spread of the rounds themselves. Keep a results.json before a run to compare with it."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.report import figure, read_results_file, spread_text, target_spread
from bench.tables import TARGETS


def comparison(before_path: Path, after_path: Path) -> str:
    before, before_about = read_results_file(before_path)
    after, after_about = read_results_file(after_path)
    lines = [f"Before: workerctl {before_about['workerctl']}, {before_about['date']}, {before_about['rounds']} rounds. "
             f"After: workerctl {after_about['workerctl']}, {after_about['date']}, {after_about['rounds']} rounds. "
             "Medians, with the lowest and highest round in brackets.", "",
             "| | target | goal | before | after |", "| --- | --- | --- | --- | --- |"]
    for number, target in enumerate(TARGETS, 1):
        lines.append(f"| T{number} | {target.name} | {target.goal} | {spread_text(target_spread(before, target))} | "
                     f"{spread_text(target_spread(after, target))} |")
    lines += ["", "| figure | before | after |", "| --- | --- | --- |"]
    keys = sorted({key for round_ in before + after for key in round_.values})
    lines += [f"| `{key}` | {spread_text(figure(before, key))} | {spread_text(figure(after, key))} |" for key in keys]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    arguments = parser.parse_args()
    print(comparison(arguments.before, arguments.after), end="")


if __name__ == "__main__":
    main()
