"""Deleting directory trees in a background thread: whoever asks never waits on the disk (even an empty
directory can take a third of a millisecond to remove, and a job may leave a big tree behind)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class TreeRemover:
    def __init__(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tree-remover")

    def remove(self, path: Path) -> None:
        """Delete `path` and everything under it soon; what cannot be deleted is left."""
        self._worker.submit(shutil.rmtree, path, ignore_errors=True)

    def close(self) -> None:
        """Return once every removal asked for so far is done."""
        self._worker.shutdown(wait=True)
