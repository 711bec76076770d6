"""The local back end: records in SQLite and output in files, all in one host's data directory."""

from __future__ import annotations

import logging

from workerctl.protocol.jobs import JobStatus
from workerctl.store.interface import JobRecord, OutputChunk, StoreError
from workerctl.store.layout import DataDirError, DataLayout
from workerctl.store.output_log import OutputLimits, OutputWriter, read_output
from workerctl.store.records import RecordReader, RecordWriter
from workerctl.store.remover import TreeRemover

log = logging.getLogger(__name__)


def prepare(layout: DataLayout) -> None:
    """Create the data directory's layout if missing and prove the records open and the directory is writable,
    so storage faults show at start-up; DataDirError with one sentence if not."""
    try:
        layout.create()
        RecordWriter(layout.records).close()
    except OSError as error:
        raise DataDirError(f"data directory {layout.root} is not usable: {error.strerror or error}") from None
    except StoreError as error:
        raise DataDirError(f"the job records in {layout.root} cannot be opened: {error.__cause__ or error}") from None


class LocalJobReader:
    """The front end's reads (a JobReader)."""

    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout
        self._records = RecordReader(layout.records)

    def get(self, job_id: str, owner: str) -> JobRecord | None:
        return self._records.get(job_id, owner)

    def list(self, owner: str, status: JobStatus | None, limit: int, label: str | None = None) -> list[JobRecord]:
        return self._records.list(owner, status, limit, label)

    def read_output(self, record: JobRecord, offset: int, limit: int | None) -> OutputChunk:
        # A final job's size is known, which lets the common case (all of it in one file) take one read.
        total = record.output_bytes if record.status.is_final else None
        return read_output(self.layout.output(record.id), offset, limit, total)

    def close(self) -> None:
        self._records.close()


class LocalJobWriter(RecordWriter):
    """The supervisor's writes (a JobWriter): the records, plus each job's output files."""

    def __init__(self, layout: DataLayout, output_limits: OutputLimits) -> None:
        super().__init__(layout.records)
        self.layout = layout
        self.output_limits = output_limits
        self._remover = TreeRemover()

    def open_output(self, job_id: str) -> OutputWriter:
        return OutputWriter(self.layout.output(job_id), self.output_limits)

    def reopen_output(self, job_id: str) -> OutputWriter:
        return OutputWriter.reopen(self.layout.output(job_id), self.output_limits)

    def holding_back(self) -> bool:
        return False  # output goes straight to its files

    def claim(self, record: JobRecord) -> bool:
        return True  # only this host writes here

    def adopt(self, job_id: str, owner: str, from_host: str) -> JobRecord | None:
        return None  # no other host's jobs are kept here

    def prune(self, older_than: float, keep_per_owner: int) -> int:
        try:
            expired = self.expired(older_than, keep_per_owner)
            self.delete(expired)
            self.commit()
        except StoreError:
            self.rollback()
            raise
        for job_id in expired:
            self._remover.remove(self.layout.output(job_id))
        return len(expired)

    def free_reserve(self) -> bool:
        return self.layout.release_reserve()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._remover.close()
