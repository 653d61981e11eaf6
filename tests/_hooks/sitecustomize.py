"""Faults of a bridge process's own host, put on ``PYTHONPATH`` for chosen processes only (see
:func:`tests._faults.faulty_env`). Python imports this module at start-up, before the bridge.

- ``BRIDGE_FAULT_CLOCK_FILE``: ``time.time()`` is off by the number of seconds written in that file,
  read again as it changes (a host clock that is off, or steps).
- ``BRIDGE_FAULT_STOP_AFTER`` = ``module:Class.method``: the process stops itself (SIGSTOP) right
  after that method's first call that returns something truthy, e.g. the store's ``Sends.depart`` (a
  send cleared to leave): a process paused by its host between deciding to send and sending.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


def _offset_clock(path: str) -> None:
    real = time.time
    monotonic = time.monotonic
    state = {"checked": -1.0, "offset": 0.0}

    def offset() -> float:
        now = monotonic()
        if now - state["checked"] > 0.05:  # re-read at most 20 times a second
            state["checked"] = now
            try:
                with open(path) as file:
                    state["offset"] = float(file.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return state["offset"]

    time.time = lambda: real() + offset()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``patch`` on module ``name`` once it has been executed."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self._name = name
        self._patch = patch

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module
        patch = self._patch

        def exec_module(module: ModuleType) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _stop_after(target: str) -> None:
    module_name, _, qualified = target.partition(":")
    class_name, _, method_name = qualified.rpartition(".")

    def patch(module: ModuleType) -> None:
        owner = getattr(module, class_name) if class_name else module
        original = getattr(owner, method_name)
        stopped = {"done": False}

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if result and not stopped["done"]:
                stopped["done"] = True
                os.kill(os.getpid(), signal.SIGSTOP)
            return result

        setattr(owner, method_name, wrapper)

    sys.meta_path.insert(0, _AfterImport(module_name, patch))


if os.environ.get("BRIDGE_FAULT_CLOCK_FILE"):
    _offset_clock(os.environ["BRIDGE_FAULT_CLOCK_FILE"])
if os.environ.get("BRIDGE_FAULT_STOP_AFTER"):
    _stop_after(os.environ["BRIDGE_FAULT_STOP_AFTER"])
