"""workerctl: run shell commands on a workerctl server, and follow them.

`from workerctl import Client` gives the API from Python (library.py); the `workerctl` command is
__main__.py. Client is imported on first use, so the command line does not pay for what it does not need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "ClientError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from workerctl import library

        return getattr(library, name)
    raise AttributeError(f"module 'workerctl' has no attribute {name!r}")
