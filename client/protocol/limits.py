"""A job's limits, one type end to end: what a start asks for (each optional), what admission resolves it to
(each set), what the record keeps, what the supervisor applies, and what an answer shows."""

from __future__ import annotations

from typing import Annotated, ClassVar

from msgspec import Struct
from workerctl.protocol.fields import rule

_POSITIVE = "be a positive number"
_POSITIVE_BYTES = "be a positive whole number of bytes"


class JobLimits(Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """The limits a job runs under: seconds, bytes of memory (swap and its /tmp included), cores, and processes
    and threads. A start may ask for the first three, each positive and within the server's maxima; the server
    fills in the rest."""

    timeout_seconds: Annotated[float, rule(_POSITIVE, gt=0)] | None = None
    memory_bytes: Annotated[int, rule(_POSITIVE_BYTES, gt=0)] | None = None
    cpus: Annotated[float, rule(_POSITIVE, gt=0)] | None = None
    processes: Annotated[int, rule(_POSITIVE, gt=0)] | None = None

    set_by_the_server: ClassVar[frozenset[str]] = frozenset({"processes"})
    """The JSON names of the limits a start may not ask for."""

    @property
    def complete(self) -> bool:
        """Whether every limit is set, as admission sets them."""
        return None not in (self.timeout_seconds, self.memory_bytes, self.cpus, self.processes)
