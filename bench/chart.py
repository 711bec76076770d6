"""The results chart: four panels, each bar a median over the rounds with its min–max as an error bar."""

from __future__ import annotations

import math
from pathlib import Path

from bench.report import figure, target_spread
from bench.rounds import Round
from bench.stats import Spread
from bench.tables import CONTENDER_NAMES, TARGETS

_COLOURS = {"floor": "#9e9e9e", "cgroupfloor": "#d0d0d0", "workerctl": "#1f77b4", "tsp": "#ff7f0e",
            "supervisord": "#2ca02c"}


def _bars(axes, spreads: list[Spread], labels: list[str], colours: list[str]) -> None:  # type: ignore[no-untyped-def]
    medians = [0.0 if spread.missing else spread.median for spread in spreads]
    errors = [[0.0 if s.missing else s.median - s.low for s in spreads],
              [0.0 if s.missing else s.high - s.median for s in spreads]]
    axes.bar(range(len(spreads)), medians, yerr=errors, color=colours, capsize=3)
    axes.set_xticks(range(len(spreads)), labels, rotation=20, ha="right", fontsize=8)


def write_chart(path: Path, rounds: list[Round]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure_, ((jobs, latency), (status, targets)) = plt.subplots(2, 2, figsize=(12, 8.5))
    contenders = ["floor", "cgroupfloor", "workerctl", "tsp", "supervisord"]
    width = 0.16
    for offset, contender in enumerate(contenders):
        spreads = [figure(rounds, f"job.rate_c{clients}.{contender}") for clients in (1, 4, 16)]
        positions = [index + (offset - 2) * width for index in range(3)]
        medians = [0.0 if s.missing else s.median for s in spreads]
        errors = [[0.0 if s.missing else s.median - s.low for s in spreads],
                  [0.0 if s.missing else s.high - s.median for s in spreads]]
        jobs.bar(positions, medians, width, yerr=errors, capsize=2, color=_COLOURS[contender],
                 label=CONTENDER_NAMES[contender])
    jobs.set_xticks(range(3), ["1 client", "4 clients", "16 clients"])
    jobs.set_title("Trivial jobs started and finished per second")
    jobs.legend(fontsize=8)

    _bars(latency, [figure(rounds, f"job.p50_ms.{c}") for c in contenders],
          [CONTENDER_NAMES[c] for c in contenders], [_COLOURS[c] for c in contenders])
    latency.set_title("Trivial job start → finished, p50 (ms, lower is better)")

    status_contenders = ["floor", "workerctl", "supervisord"]
    _bars(status, [figure(rounds, f"status.rate_c4.{c}") for c in status_contenders]
          + [figure(rounds, f"fresh.rate_c4.{c}") for c in ("floor", "workerctl")],
          ["Tornado floor", "workerctl status", "supervisord getProcessInfo\n(plain HTTP)", "floor, new TLS each",
           "workerctl, new TLS each"],
          [_COLOURS[c] for c in status_contenders] + [_COLOURS["floor"], _COLOURS["workerctl"]])
    status.set_title("Status answers per second, 4 clients")

    scores = []
    for target in TARGETS:
        spread = target_spread(rounds, target)
        scores.append(math.nan if spread.missing else target.score(spread.median))
    names = [f"T{number}" for number in range(1, len(TARGETS) + 1)]
    shown = [math.nan if math.isnan(score) else score for score in scores]
    targets.bar(range(len(shown)), shown, color=["#2ca02c" if s >= 1 else "#d62728" for s in shown])
    for index, score in enumerate(shown):
        if not math.isnan(score):
            targets.annotate(f"{score:.2g}", (index, score), ha="center", va="bottom", fontsize=7)
    targets.set_yscale("log")
    targets.axhline(1.0, color="black", linewidth=1)
    targets.set_xticks(range(len(names)), names, fontsize=8)
    targets.set_title("Targets: how far past the goal (1 = on it; green met, red missed)")
    figure_.tight_layout()
    figure_.savefig(path, dpi=110)
    plt.close(figure_)
