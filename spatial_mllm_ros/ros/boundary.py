# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Callback boundaries: what a topic, service, action or timer sends can never end a node.

rclpy re-raises a callback's exception out of ``executor.spin()``, which ends the process. Every
callback a node registers is therefore wrapped by :meth:`Boundary.guard`: an exception is counted by
input and reason, its first occurrence per reason is logged with the traceback, later ones are only
counted (a flood of bad messages must not become a flood of log lines), and the callback returns a
fallback value instead of raising into the executor.
"""

from __future__ import annotations

import functools
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

# Longest text kept per "last error" entry of the diagnostics (a message can carry megabytes).
MAX_ERROR_TEXT = 300


def reason_of(error: BaseException) -> str:
    """Counter key of an exception: its ``reason`` attribute when it has one, else its type name."""
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) and reason else type(error).__name__


def clip(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` cut to ``limit`` characters (with a marker when cut)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class Counters:
    """Thread-safe named counters plus the last error text per key (what diagnostics show)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._last_error: dict[str, str] = {}

    def add(self, key: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``key``."""
        with self._lock:
            self._counts[key] += amount

    def note_error(self, key: str, text: str) -> None:
        """Remember ``text`` (clipped) as the last error of ``key``."""
        with self._lock:
            self._last_error[key] = clip(text)

    def get(self, key: str) -> int:
        """Current value of ``key`` (0 when never counted)."""
        with self._lock:
            return self._counts.get(key, 0)

    def snapshot(self) -> tuple[dict[str, int], dict[str, str]]:
        """(counts, last error texts), copied under the lock."""
        with self._lock:
            return dict(self._counts), dict(self._last_error)

    def clear(self) -> None:
        """Forget every counter and error."""
        with self._lock:
            self._counts.clear()
            self._last_error.clear()


class Boundary:
    """Wraps callbacks so that they never raise; failures counted as ``callback_error_<name>[_<reason>]``.

    ``logger`` is an rclpy logger (anything with ``error``). Each (callback, reason) pair is logged
    once with its traceback; the counters keep every occurrence.
    """

    def __init__(self, counters: Counters, logger: Any) -> None:
        self.counters = counters
        self._logger = logger
        self._logged: set[tuple[str, str]] = set()
        self._logged_lock = threading.Lock()

    def failed(self, name: str, error: BaseException) -> None:
        """Count and (first time per reason) log ``error`` raised by the callback ``name``."""
        reason = reason_of(error)
        self.counters.add(f"callback_error_{name}")
        self.counters.add(f"callback_error_{name}_{reason}")
        self.counters.note_error(f"callback_error_{name}", f"{type(error).__name__}: {error}")
        with self._logged_lock:
            first = (name, reason) not in self._logged
            self._logged.add((name, reason))
        if first:
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=8))
            self._logger.error(
                f"callback {name} failed ({reason}); counted, later ones are not logged:\n"
                f"{clip(detail, 4000)}"
            )

    def guard(
        self, name: str, callback: Callable[..., Any], fallback: Callable[..., Any] | None = None
    ) -> Callable[..., Any]:
        """``callback`` that counts and swallows its exceptions; returns ``fallback(*args)`` then.

        Services and actions need a response object back: pass a ``fallback`` that builds one.
        """

        @functools.wraps(callback)
        def guarded(*args: Any) -> Any:
            try:
                return callback(*args)
            except Exception as error:  # the boundary: nothing a message does may reach the executor
                self.failed(name, error)
                return fallback(*args) if fallback is not None else None

        return guarded
