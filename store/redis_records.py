"""The Redis back end's records, as both sides read them: a record's JSON (every field of JobRecord, its limits
a key each, as records of earlier versions have them), the connection and key names reader and writer share,
and the front end's reads (`RedisJobReader`). The writer is redis_store.py; the key layout is described there.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import fields

from workerctl.protocol.jobs import JobStatus
from workerctl.store.interface import (
    JobRecord,
    OutputChunk,
    StoreError,
    StoreUnreachable,
    limit_columns,
    limits_from_columns,
)
from workerctl.store.redis_connection import RedisKeys, RedisLocation, connect, storing
from workerctl.store.redis_output import read_output

_FIELDS = [field.name for field in fields(JobRecord) if field.name != "limits"]  # limits: a key each, as before
_LIST_PAGE = 200  # records read per round trip when a filter leaves some out


def encode_record(record: JobRecord) -> str:
    values = {**{name: getattr(record, name) for name in _FIELDS}, **limit_columns(record.limits)}
    values["labels"] = list(record.labels)
    # ASCII: a command holding a lone surrogate (JSON allows "\ud800") is still stored, as JSON escapes it.
    return json.dumps(values, separators=(",", ":"))


def decode_record(text: bytes | str) -> JobRecord:
    values = json.loads(text)
    values["status"] = JobStatus(values["status"])
    values["labels"] = tuple(values.get("labels", ()))
    return JobRecord(**{name: values[name] for name in _FIELDS if name in values}, limits=limits_from_columns(values))


class RedisStoreBase:
    """What the reader and the writer share: the connection, the key names and reading a record."""

    def __init__(self, location: str, may_be_down: bool = False) -> None:
        """StoreError if the location is not usable, or (unless `may_be_down`) Redis cannot be reached now."""
        self.location = RedisLocation.parse(location)
        self.keys = RedisKeys(self.location.prefix)
        self._client = connect(self.location)
        try:
            with self._storing("reach the job store"):
                self._client.ping()
        except TypeError as error:  # redis-py hands the URL's parameters to each connection it makes
            self._client.close()
            name = str(error).rpartition(" ")[2]
            raise StoreError(f"the Redis location has a parameter that is not one: {name}") from None
        except StoreUnreachable:
            if may_be_down:
                return  # its reads fail until it can be reached
            self._client.close()
            raise
        except StoreError:
            self._client.close()
            raise

    def _storing(self, what: str) -> AbstractContextManager[None]:
        return storing(what, self.location.where)

    def get(self, job_id: str, owner: str) -> JobRecord | None:
        """The job, if it exists and belongs to `owner`; another user's job is the same as no job."""
        with self._storing("read the job"):
            text = self._client.get(self.keys.job(job_id))
        record = decode_record(text) if text is not None else None
        return record if record is not None and record.owner == owner else None

    def _records(self, job_ids: list[bytes]) -> list[JobRecord]:
        """The records of these jobs that still exist, in the same order."""
        if not job_ids:
            return []
        texts = self._client.mget([self.keys.job(job_id.decode()) for job_id in job_ids])
        return [decode_record(text) for text in texts if text is not None]

    def close(self) -> None:
        self._client.close()


class RedisJobReader(RedisStoreBase):
    """The front end's reads (a JobReader)."""

    def list(self, owner: str, status: JobStatus | None, limit: int, label: str | None = None) -> list[JobRecord]:
        """The owner's jobs, newest first; only those in `status` and with `label`, where given."""
        filtered = status is not None or label is not None
        page = max(limit, _LIST_PAGE) if filtered else limit
        found: list[JobRecord] = []
        below = "+inf"
        with self._storing("list the jobs"):
            while len(found) < limit:
                # By score, not by rank: jobs created meanwhile do not shift the pages.
                entries = self._client.zrevrangebyscore(self.keys.jobs_of(owner), below, "-inf", start=0, num=page,
                                                        withscores=True)
                found += [record for record in self._records([job_id for job_id, _ in entries])
                          if record.owner == owner and (status is None or record.status == status)
                          and (label is None or label in record.labels)]
                if len(entries) < page:
                    break
                below = f"({int(entries[-1][1])}"
        return found[:limit]

    def read_output(self, record: JobRecord, offset: int, limit: int | None) -> OutputChunk:
        """The job's kept output from stream offset `offset`, at most `limit` bytes of it."""
        with self._storing("read the job's output"):
            return read_output(self._client, self.keys, record.id, offset, limit)
