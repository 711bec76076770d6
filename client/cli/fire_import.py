"""Importing python-fire without what it loads for nothing here: asyncio, and its help and completion.

Fire imports, up front, the modules for everything it can do: asyncio to run coroutine functions, its help
screens, shell completion, an interactive shell and a pager. fire_adapter.py uses it only to bind a command
line to a plain function's arguments, and those modules cost more than the rest of a `workerctl status`
together. So while fire is imported:

- asyncio, unless something imported it already, has a stand-in: Fire calls asyncio.iscoroutinefunction on
  every call, which the stand-in answers as asyncio would; for anything else it imports the real asyncio. It
  leaves sys.modules once fire is imported, so nothing but fire ever sees it.
- Fire's help, docstring, completion, interactive and console modules are loaded lazily
  (importlib.util.LazyLoader): each runs the first time anything of it is used, as when Fire explains a usage
  error (fire_adapter.py reads that explanation), and never when the command line binds.

Either way Fire behaves as it would with a plain `import fire`; only when the cost is paid changes.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import sys
from types import ModuleType
from typing import Any

_LOADED_WHEN_USED = frozenset({"fire.completion", "fire.console.console_io", "fire.docstrings", "fire.formatting",
                               "fire.helptext", "fire.interact"})


def import_fire() -> ModuleType:
    """The `fire` module, imported as described above."""
    if "fire" in sys.modules:
        return sys.modules["fire"]
    stand_in = None if "asyncio" in sys.modules else _AsyncioOnDemand("asyncio")
    if stand_in is not None:
        sys.modules["asyncio"] = stand_in
    finder = _LazyFinder(_LOADED_WHEN_USED)
    sys.meta_path.insert(0, finder)
    try:
        import fire
    finally:
        sys.meta_path.remove(finder)
        if stand_in is not None and sys.modules.get("asyncio") is stand_in:
            del sys.modules["asyncio"]
    return fire


class _LazyFinder:
    """Finds the modules `names` as the path would, with loaders that run each module when it is first used."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


class _AsyncioOnDemand(ModuleType):
    """Stands in for asyncio inside fire."""

    @staticmethod
    def iscoroutinefunction(function: Any) -> bool:
        real = sys.modules.get("asyncio")
        if real is not None and not isinstance(real, _AsyncioOnDemand):  # it may know markers inspect does not
            return bool(real.iscoroutinefunction(function))
        return inspect.iscoroutinefunction(function)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # a probe of what kind of module this is, not a use of asyncio
            raise AttributeError(name)
        if sys.modules.get("asyncio") is self:
            del sys.modules["asyncio"]
        import asyncio

        return getattr(asyncio, name)
