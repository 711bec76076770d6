"""Opening the store: the one place that knows which back end keeps the jobs, so neither the front end nor the
supervisor names one."""

from __future__ import annotations

from pathlib import Path

from workerctl.store.interface import JobReader, JobWriter
from workerctl.store.layout import DataLayout
from workerctl.store.local import LocalJobReader, LocalJobWriter
from workerctl.store.output_log import OutputLimits


def open_reader(data_dir: Path) -> JobReader:
    """The front end's reads; StoreError or OSError if the store cannot be opened."""
    return LocalJobReader(DataLayout(data_dir))


def open_writer(data_dir: Path, max_output_bytes: int) -> JobWriter:
    """The supervisor's writes, keeping each job's output whole up to `max_output_bytes` and its head and tail
    past that; StoreError or OSError if the store cannot be opened."""
    return LocalJobWriter(DataLayout(data_dir), OutputLimits.for_cap(max_output_bytes))
