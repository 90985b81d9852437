# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The ROS side of questions: ``~/question`` and ``~/ask`` in, exactly one ``SpatialAnswer`` out each.

Validation (the request schema) and the bounded queue + worker are ROS-free
(:mod:`spatial_mllm_ros.engine.requests`, :mod:`spatial_mllm_ros.engine.question_queue`); this module
turns messages into requests and every queue outcome (answer or rejection, immediate ones included)
into the one ``SpatialAnswer`` published on ``~/answer``. ``~/ask`` returns the same answer as its
response (or a timeout rejection after ``request_timeout_s``; the answer itself still follows on
``~/answer``).

Messages lost by DDS before the ``~/question`` callback ran (a reader history overflowing in a burst)
never reach the queue; the subscription's ``message_lost`` event counts them as
``dropped_before_queue``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from spatial_mllm_ros.engine.question_queue import QuestionQueue, Ticket
from spatial_mllm_ros.engine.requests import (
    QuestionRequest,
    Rejection,
    RequestLimits,
    parse_question_text,
    validate_request,
)
from spatial_mllm_ros.msg import SpatialAnswer
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros.boundary import Boundary
from spatial_mllm_ros.srv import AskSpatial

# A burst of questions from several clients waits here for the (fast, never blocking) question callback;
# not deeper, since a question may be 128 KB.
QUESTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
# ~/ask requests of a burst wait in the service's history until an executor thread takes them.
ASK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Answers are small and each one matters: a reader that falls behind in a burst still gets all of them
# (a keep-last writer drops its oldest unacknowledged samples when its history is full).
ANSWER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def ask_fields(request: AskSpatial.Request) -> dict[str, Any]:
    """An AskSpatial request as schema fields (zero stamps = no bound)."""
    start, end = conv.stamp_to_sec(request.window_start), conv.stamp_to_sec(request.window_end)
    return {
        "question": request.question,
        "options": list(request.options),
        "task_type": request.task_type,
        "max_frames": int(request.max_frames),
        "window_start": start if start > 0 else None,
        "window_end": end if end > 0 else None,
        "query_id": request.query_id,
    }


def _echo(request: QuestionRequest | Rejection) -> tuple[str, str, str]:
    """(question, query_id, task_type) of a request or a rejected one."""
    return str(request.question), str(request.query_id), str(request.task_type)


class QuestionDesk:
    """Owns the question queue, the ``~/answer`` publisher and the ``~/question`` subscription.

    Args:
        node: the node (publisher, subscription and logging live on it).
        boundary: guards the callbacks.
        answer: ``answer(request) -> SpatialAnswer``, run on the worker thread (may raise ``RejectedError``).
        decorate: fills model id / backend into every outgoing message.
        is_active: whether questions are taken now (others are rejected as ``inactive`` with the reason).
        capacity: questions accepted and not yet answered.
        max_frames: ``RequestLimits.max_frames`` (a question may ask for at most this many frames).
    """

    def __init__(
        self,
        node: Node,
        boundary: Boundary,
        answer: Callable[[QuestionRequest], SpatialAnswer],
        decorate: Callable[[SpatialAnswer], None],
        is_active: Callable[[], str],
        capacity: int,
        max_frames: int,
    ) -> None:
        self._node = node
        self._boundary = boundary
        self._decorate = decorate
        self._inactive_reason = is_active
        self.limits = RequestLimits(max_frames=max_frames)
        self._ids = itertools.count(1)
        self.publisher = node.create_publisher(SpatialAnswer, "~/answer", ANSWER_QOS)
        self.queue = QuestionQueue(
            answer, capacity=capacity, on_result=self._publish_outcome, name=f"{node.get_name()}_questions"
        )
        self._subscription = None

    # ------------------------------------------------------------------------------ lifecycle
    def subscribe(self, group: Any) -> None:
        """Start taking ``~/question`` (activate)."""
        events = SubscriptionEventCallbacks(message_lost=self._boundary.guard("question_lost", self._on_lost))
        self._subscription = self._node.create_subscription(
            String,
            "~/question",
            self._boundary.guard("question", self._on_question_topic),
            QUESTION_QOS,
            callback_group=group,
            event_callbacks=events,
        )

    def unsubscribe(self) -> None:
        """Stop taking ``~/question`` (deactivate); accepted questions are still answered."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            self._node.destroy_subscription(subscription)

    def close(self) -> None:
        """Reject what waits, end the worker (process exit)."""
        self.unsubscribe()
        self.queue.stop()

    # ------------------------------------------------------------------------------ input
    def _on_lost(self, info: Any) -> None:
        self.queue.note("dropped_before_queue", int(info.total_count_change))

    def _with_id(self, request: QuestionRequest | Rejection) -> QuestionRequest | Rejection:
        if request.query_id:
            return request
        query_id = f"{self._node.get_name()}-{next(self._ids)}"
        if isinstance(request, Rejection):
            return replace(request, query_id=query_id)
        return request.model_copy(update={"query_id": query_id})

    def submit(self, request: QuestionRequest | Rejection) -> Ticket:
        """Queue a request or reject it (invalid, inactive, busy); its answer is published either way."""
        request = self._with_id(request)
        inactive = self._inactive_reason()
        if inactive and not isinstance(request, Rejection):
            return self.queue.reject(request, "inactive", inactive)
        return self.queue.submit(request)

    def _on_question_topic(self, msg: String) -> None:
        self._boundary.counters.add("messages_question")
        self.submit(parse_question_text(msg.data, self.limits))

    def on_ask(
        self, request: AskSpatial.Request, response: AskSpatial.Response, timeout_s: float
    ) -> AskSpatial.Response:
        """``~/ask``: validate, queue, wait up to ``timeout_s`` for the outcome."""
        self._boundary.counters.add("messages_ask")
        ticket = self.submit(validate_request(ask_fields(request), self.limits))
        try:
            outcome = ticket.result(timeout=timeout_s)
        except TimeoutError:
            self.queue.note("timed_out")
            question, query_id, task_type = _echo(ticket.request)
            response.answer = self._rejection(
                f"timeout: no answer within request_timeout_s={timeout_s:g} s (the answer will still be "
                "published on ~/answer)",
                question,
                query_id,
                task_type,
            )
            return response
        response.answer = self.outcome_msg(outcome)
        return response

    def ask_fallback(self, request: AskSpatial.Request, response: AskSpatial.Response) -> AskSpatial.Response:
        """The response when ``on_ask`` itself failed (counted by the boundary): an internal error."""
        response.answer = self._rejection(
            "internal error while taking the question (counted in diagnostics)",
            str(request.question)[:200],
            str(request.query_id)[:128],
            "",
        )
        return response

    # ------------------------------------------------------------------------------ output
    def _rejection(self, reason: str, question: str, query_id: str, task_type: str) -> SpatialAnswer:
        msg = conv.rejection_msg(
            reason,
            question=question,
            query_id=query_id,
            task_type=task_type,
            stamp=self._node.get_clock().now().to_msg(),
        )
        self._decorate(msg)
        return msg

    def outcome_msg(self, outcome: Any) -> SpatialAnswer:
        """The SpatialAnswer of a queue outcome (the answer, or a rejection naming the reason)."""
        if outcome.answered:
            return outcome.answer
        question, query_id, task_type = _echo(outcome.request)
        message = (
            outcome.message if outcome.reason in outcome.message else f"{outcome.reason}: {outcome.message}"
        )
        return self._rejection(message, question, query_id, task_type)

    def _publish_outcome(self, outcome: Any) -> None:
        self.publisher.publish(self.outcome_msg(outcome))

    # ------------------------------------------------------------------------------ diagnostics
    def counts(self) -> dict[str, int]:
        """The queue's counters (``questions_`` prefixed), taken under its lock."""
        return {f"questions_{key}": value for key, value in self.queue.counts().items()}
