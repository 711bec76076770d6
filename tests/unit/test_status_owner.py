"""A job's status has one owner: JobRecord.move_to, which checks the move. No module of workerctl assigns a
status any other way (an attribute assignment, or `dataclasses.replace(record, status=...)`), so no path can
settle a job without the transition check: the supervisor's, the lost-host sweep's and both stores' all go
through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from workerctl.protocol.jobs import InvalidTransition, JobStatus, stored_before
from workerctl.store.interface import JobRecord

_ROOT = Path(__file__).resolve().parents[2]
_PACKAGES = ("client", "server", "store", "supervisor", "web", "cluster", "runtime")
# (module, function) pairs allowed to assign a `status` attribute, and why.
_OWNERS = {
    ("store/interface.py", "move_to"),  # the one owner
    ("client/cli/exit_status.py", "__init__"),  # a CLI error's exit status, not a job's
}


def _status_writes(path: Path) -> list[tuple[str, int]]:
    """(function, line) of every assignment to a `.status` attribute and every call passing `status=` to
    `replace` in the module at `path`."""
    tree = ast.parse(path.read_text(), str(path))
    writes = []
    for function in [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]:
        for node in ast.walk(function):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            flat = [element for target in targets
                    for element in (target.elts if isinstance(target, ast.Tuple) else [target])]
            if any(isinstance(target, ast.Attribute) and target.attr == "status" for target in flat):
                writes.append((function.name, node.lineno))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "replace" \
                    and any(keyword.arg == "status" for keyword in node.keywords):
                writes.append((function.name, node.lineno))
    return writes


def test_no_module_assigns_a_status_but_its_owner() -> None:
    found = []
    for package in _PACKAGES:
        for path in sorted((_ROOT / package).rglob("*.py")):
            relative = path.relative_to(_ROOT).as_posix()
            found += [(relative, function, line) for function, line in _status_writes(path)
                      if (relative, function) not in _OWNERS]
    assert not found, f"statuses assigned outside JobRecord.move_to: {found}"


def test_the_scan_sees_each_way_of_assigning_a_status(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def settle(record):\n    record.status = 'error'\n"
                      "def settle_too(record):\n    record.status, record.reason = 'error', 'lost'\n"
                      "def copy(record):\n    return replace(record, status='running')\n")
    assert _status_writes(module) == [("settle", 2), ("settle_too", 4), ("copy", 6)]


def test_the_owner_checks_the_move_and_stamps_the_time() -> None:
    record = JobRecord("j1", "alice", "true", JobStatus.CREATED, created_at=1.0)
    record.move_to(JobStatus.RUNNING)
    assert record.started_at is not None
    record.move_to(JobStatus.ERROR, reason="host a lost")
    assert (record.status, record.reason) == (JobStatus.ERROR, "host a lost") and record.ended_at is not None
    with pytest.raises(InvalidTransition):
        record.move_to(JobStatus.STOPPED)
    assert record.status is JobStatus.ERROR


@pytest.mark.parametrize("new", list(JobStatus))
def test_a_store_accepts_a_save_only_over_a_status_that_moves_to_it(new: JobStatus) -> None:
    assert JobStatus.FINISHED not in stored_before(new) and JobStatus.ERROR not in stored_before(new)
    assert (new in stored_before(new)) is (not new.is_final)
