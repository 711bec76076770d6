"""Processes signalled one by one get their signal parents first, whatever their pids."""

from __future__ import annotations

from dataclasses import dataclass

from workerctl.supervisor.containment import parents_first


@dataclass(frozen=True)
class Listed:
    """Stands in for a psutil.Process: a pid and its parent's."""

    pid: int
    parent: int

    def ppid(self) -> int:
        return self.parent


def test_parents_come_before_their_children_though_the_pids_wrapped_around():
    shell, sleep, grandchild = Listed(32_760, 1), Listed(300, 32_760), Listed(12, 300)
    unrelated = Listed(5, 1)
    order = parents_first([grandchild, sleep, unrelated, shell])
    assert order.index(shell) < order.index(sleep) < order.index(grandchild)
    assert set(order) == {shell, sleep, grandchild, unrelated}


def test_a_loop_of_parents_does_not_hang():
    first, second = Listed(10, 20), Listed(20, 10)  # a pid reused while the listing was taken
    assert set(parents_first([first, second])) == {first, second}
