# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""A bounded question queue in front of one worker thread: every request gets exactly one outcome.

Camera callbacks must never wait for inference, and a question must never vanish. So:

* :meth:`QuestionQueue.submit` never blocks. It accepts the request (queued for the worker) or
  rejects it at once with a reason: ``busy`` (``capacity`` requests already pending, the running one
  included), ``shutting_down`` (after :meth:`~QuestionQueue.stop`), or the reason of a
  :class:`~spatial_mllm_ros.engine.requests.Rejection` handed in instead of a request (invalid input).
* One worker thread runs ``handler(request)`` per accepted request, in order. A handler may refuse a
  request by raising :class:`RejectedError` (e.g. ``no_frames``); any other exception becomes an
  ``internal_error`` rejection. Nothing a handler does ends the worker.
* Exactly one :class:`Outcome` per submission (answer or rejection, immediate ones included) goes to
  the ``on_result`` callback and to the submission's :class:`Ticket`.
* :meth:`QuestionQueue.stop` rejects what is still waiting with ``shutting_down`` and joins the worker.

Every outcome is counted by reason (:meth:`QuestionQueue.counts`, a snapshot taken under the lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from spatial_mllm_ros.engine.requests import QuestionRequest, Rejection

ANSWERED = "answered"
ACCEPTED = "accepted"
REASON_BUSY = "busy"
REASON_SHUTTING_DOWN = "shutting_down"
REASON_INTERNAL_ERROR = "internal_error"
REASON_NOT_CONFIGURED = "not_configured"
REASON_NO_FRAMES = "no_frames"
SHUTTING_DOWN_MESSAGE = "the node is shutting down: question not answered"
_LOG = logging.getLogger(__name__)


class RejectedError(Exception):
    """Raised by a handler to refuse a request with a reason key (e.g. ``no_frames``) and a message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Outcome:
    """What became of one submission.

    ``reason`` is ``"answered"`` (then ``answer`` is the handler's return value) or a rejection reason
    key (then ``message`` says why). ``wait_s``/``run_s``: time queued and time in the handler.
    ``request`` is what was submitted: a ``QuestionRequest`` or a ``Rejection``, both of which carry
    ``question``, ``query_id`` and ``task_type`` for the answer message.
    """

    request: Any
    reason: str
    message: str = ""
    answer: Any = None
    wait_s: float = 0.0
    run_s: float = 0.0

    @property
    def answered(self) -> bool:
        """True when the handler returned an answer."""
        return self.reason == ANSWERED


class Ticket:
    """A submission's receipt: accepted or not at once, and its :class:`Outcome` when it exists."""

    def __init__(self, request: Any, reason: str, message: str = "") -> None:
        self.request = request
        self.reason = reason  # "accepted" or the immediate rejection reason
        self.message = message
        self._future: Future = Future()
        self.submitted_at = time.monotonic()

    @property
    def accepted(self) -> bool:
        """True when the request was queued for the worker."""
        return self.reason == ACCEPTED

    def done(self) -> bool:
        """True once the outcome exists."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> Outcome:
        """The outcome, waiting up to ``timeout`` seconds (``TimeoutError`` when it is not there yet)."""
        return self._future.result(timeout=timeout)


class QuestionQueue:
    """Bounded queue + one worker thread (see the module docstring).

    Args:
        handler: ``handler(request) -> answer``, run on the worker thread; it raises
            :class:`RejectedError` to refuse a request.
        capacity: most requests accepted and not yet finished (the running one included), >= 1.
        on_result: called once per submission with its :class:`Outcome` (on the worker thread, or in the
            caller's thread for immediate rejections); its exceptions are counted and logged, never raised.
        name: the worker thread's name.
    """

    def __init__(self, handler: Callable[[Any], Any], *, capacity: int,
                 on_result: Callable[[Outcome], None] | None = None, name: str = "question-worker") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._handler = handler
        self._on_result = on_result
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting: deque[Ticket] = deque()
        self._pending = 0
        self._stopping = False
        self._counts: Counter = Counter()
        self._last_error = ""
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ public API
    def submit(self, request: Any) -> Ticket:
        """Queue ``request`` or reject it at once (never blocks).

        A :class:`~spatial_mllm_ros.engine.requests.Rejection` given as ``request`` is rejected with its
        reason (so ``submit(parse_question_text(...))`` handles valid and invalid input alike).
        """
        if isinstance(request, Rejection):
            return self.reject(request, request.reason, request.message)
        with self._lock:
            self._counts["submitted"] += 1
            if self._stopping:
                ticket = Ticket(request, REASON_SHUTTING_DOWN, SHUTTING_DOWN_MESSAGE)
            elif self._pending >= self.capacity:
                ticket = Ticket(request, REASON_BUSY,
                                f"busy: {self._pending} question(s) pending (capacity {self.capacity}); "
                                "ask again later")
            else:
                ticket = Ticket(request, ACCEPTED)
                self._pending += 1
                self._counts[ACCEPTED] += 1
                self._waiting.append(ticket)
                self._ready.notify()
                return ticket
            self._counts[f"rejected_{ticket.reason}"] += 1
        self._deliver(ticket, Outcome(request, ticket.reason, ticket.message))
        return ticket

    def reject(self, request: Any, reason: str, message: str) -> Ticket:
        """Refuse ``request`` without queueing it (invalid input, node inactive, ...); counted, delivered."""
        ticket = Ticket(request, reason, message)
        with self._lock:
            self._counts["submitted"] += 1
            self._counts[f"rejected_{reason}"] += 1
        self._deliver(ticket, Outcome(request, reason, message))
        return ticket

    def note(self, key: str, count: int = 1) -> None:
        """Count an event outside the queue's own (e.g. ``timed_out`` or ``dropped_before_queue``)."""
        with self._lock:
            self._counts[key] += count

    def counts(self) -> dict[str, int]:
        """Snapshot of the counters: ``submitted``, ``accepted``, ``answered``, ``rejected_<reason>``, ...

        Invariants: submitted = accepted + immediate rejections; accepted = answered + rejections after
        acceptance (``internal_error``, handler reasons, ``shutting_down``) + ``pending``.
        """
        with self._lock:
            counts = dict(self._counts)
            counts["pending"] = self._pending
            return counts

    @property
    def pending(self) -> int:
        """Requests accepted and not yet finished (the running one included)."""
        with self._lock:
            return self._pending

    @property
    def last_error(self) -> str:
        """The last handler or callback failure, for diagnostics ("" when none)."""
        with self._lock:
            return self._last_error

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._worker.is_alive()

    def stop(self, timeout: float = 30.0) -> bool:
        """Reject what is waiting with ``shutting_down``, let the running request finish, join the worker.

        Idempotent. Returns True when the worker has ended within ``timeout`` seconds.
        """
        with self._lock:
            self._stopping = True
            leftovers = list(self._waiting)
            self._waiting.clear()
            self._pending -= len(leftovers)
            if leftovers:
                self._counts[f"rejected_{REASON_SHUTTING_DOWN}"] += len(leftovers)
            self._ready.notify_all()
        for ticket in leftovers:
            self._deliver(ticket, Outcome(ticket.request, REASON_SHUTTING_DOWN, SHUTTING_DOWN_MESSAGE,
                                          wait_s=time.monotonic() - ticket.submitted_at))
        if self._worker is not threading.current_thread():
            self._worker.join(timeout)
        return not self._worker.is_alive()

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._ready.wait()
                if not self._waiting:
                    return
                ticket = self._waiting.popleft()
            started = time.monotonic()
            outcome = self._run(ticket, started)
            with self._lock:
                self._pending -= 1
                key = ANSWERED if outcome.answered else f"rejected_{outcome.reason}"
                self._counts[key] += 1
            self._deliver(ticket, outcome)

    def _run(self, ticket: Ticket, started: float) -> Outcome:
        wait_s = started - ticket.submitted_at
        try:
            answer = self._handler(ticket.request)
        except RejectedError as refusal:
            return Outcome(ticket.request, refusal.reason, refusal.message, wait_s=wait_s,
                           run_s=time.monotonic() - started)
        except Exception as error:  # a failing handler must not end the worker
            message = f"internal error: {type(error).__name__}: {error}"
            _LOG.error("question handler failed: %s", message)
            with self._lock:
                self._last_error = message
            return Outcome(ticket.request, REASON_INTERNAL_ERROR, message, wait_s=wait_s,
                           run_s=time.monotonic() - started)
        return Outcome(ticket.request, ANSWERED, answer=answer, wait_s=wait_s,
                       run_s=time.monotonic() - started)

    def _deliver(self, ticket: Ticket, outcome: Outcome) -> None:
        if not ticket._future.done():
            ticket._future.set_result(outcome)
        if self._on_result is None:
            return
        try:
            self._on_result(outcome)
        except Exception as error:  # a failing publisher must not end the worker
            with self._lock:
                self._counts["callback_errors"] += 1
                self._last_error = f"result callback failed: {type(error).__name__}: {error}"
            _LOG.error("question result callback failed: %s: %s", type(error).__name__, error)


def answer_from_buffer(engine: Any, buffer: Any, request: QuestionRequest, *, default_max_frames: int,
                       camera_id: str | None = None) -> Any:
    """The QA node's queue handler without ROS: the frames of the request's window, then ``engine.ask``.

    ``engine`` is a ``SpatialQA`` and ``buffer`` a ``FrameBuffer`` (None while unconfigured); frames of
    ``camera_id`` only, or of every camera. ``max_frames`` 0 in the request means ``default_max_frames``.
    Returns the engine's ``Answer`` (its ``error`` set when the engine refused the question). Raises
    :class:`RejectedError` ``not_configured`` without engine or buffer, ``no_frames`` when the window
    holds no frame (with a model loaded; without one the engine answers "no model loaded" itself).
    """
    if engine is None or buffer is None:
        raise RejectedError(REASON_NOT_CONFIGURED, "the node is not configured")
    start, end = request.window_start, request.window_end
    frames = buffer.frames(camera_id=camera_id, start=start, end=end)
    if not frames and getattr(engine, "model_loaded", True):
        window = "" if start is None and end is None else f" in the window {start}..{end}"
        raise RejectedError(REASON_NO_FRAMES,
                            f"no camera frames buffered{window} ({len(buffer)} in the buffer); check the "
                            "camera topics")
    return engine.ask(frames, request.question, list(request.options) or None, request.task_type or None,
                      request.max_frames or default_max_frames, request.query_id)
