# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Question request schema and the bounded question queue: reasons, bounds, exactly one outcome each."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_mllm_ros.engine.question_queue import Outcome, QuestionQueue, RejectedError
from spatial_mllm_ros.engine.requests import (
    MAX_OPTIONS,
    MAX_QUESTION_CHARS,
    MAX_STAMP_S,
    REQUEST_REASONS,
    QuestionRequest,
    Rejection,
    RequestLimits,
    json_depth,
    parse_question_text,
    validate_request,
)

LIMITS = RequestLimits(max_frames=8)


def reason_of(result) -> str:
    assert isinstance(result, Rejection), result
    return result.reason


def test_plain_text_and_json_questions_are_accepted():
    plain = parse_question_text("  How many chairs are there?  ", LIMITS)
    assert plain == QuestionRequest(question="How many chairs are there?")
    request = parse_question_text(
        '{"question": "Which is closer?", "options": [" lamp", "door"], "task_type": "object_rel_distance",'
        ' "max_frames": 8, "query_id": "q-1", "window_start": 10, "window_end": 12.5}', LIMITS)
    assert request.options == ("lamp", "door")
    assert (request.max_frames, request.window_start, request.window_end) == (8, 10.0, 12.5)
    assert request.query_id == "q-1"


@pytest.mark.parametrize(("text", "reason"), [
    ('{"question": "q", "max_frames": 1e400}', "invalid_json"),
    ('{"question": "q", "max_frames": -Infinity}', "invalid_json"),
    ('{"question": "q", "max_frames": NaN}', "invalid_json"),
    ('{"question": "q", "max_frames": ' + "9" * 40 + "}", "invalid_json"),
    ('{"question": "q", "question": "p"}', "invalid_json"),
    ('{"question": "q"', "invalid_json"),
    ("{" + '"a":' * 3 + "1}", "invalid_json"),
    ('{"question": "q", "max_frames": 9}', "invalid_max_frames"),
    ('{"question": "q", "max_frames": 256}', "invalid_max_frames"),
    ('{"question": "q", "max_frames": -1}', "invalid_max_frames"),
    ('{"question": "q", "max_frames": 2.0}', "invalid_max_frames"),
    ('{"question": "q", "max_frames": true}', "invalid_max_frames"),
    ('{"question": ""}', "invalid_question"),
    ('{"question": 5}', "invalid_question"),
    ('{"options": ["a"]}', "invalid_question"),
    ('{"question": "q", "options": "ab"}', "invalid_options"),
    ('{"question": "q", "options": ["a", " "]}', "invalid_options"),
    ('{"question": "q", "task_type": "astrology"}', "invalid_task_type"),
    ('{"question": "q", "window_start": 5, "window_end": 4}', "invalid_window"),
    ('{"question": "q", "window_start": -1}', "invalid_window"),
    ('{"question": "q", "window_end": 1e300}', "invalid_window"),
    ('{"question": "q", "query_id": "a\\u0000b"}', "invalid_query_id"),
    ('{"question": "q", "colour": "red"}', "unknown_field"),
])
def test_bad_requests_are_rejected_with_a_reason(text, reason):
    result = parse_question_text(text, LIMITS)
    assert reason_of(result) == reason
    assert result.message


def test_size_and_depth_are_checked_before_parsing():
    deep = "{" + '"a":[' * 100_000 + "]" * 100_000 + "}"
    started = time.perf_counter()
    result = parse_question_text(deep, RequestLimits(max_frames=8, max_text_chars=10**6))
    assert reason_of(result) == "too_deep"
    assert time.perf_counter() - started < 1.0
    assert reason_of(parse_question_text(deep, LIMITS)) == "too_large"
    # brackets inside strings do not count, escaped quotes do not end a string
    assert json_depth('{"q": "[[[[[[\\"[[[", "o": [["x"]]}') == 3


def test_option_count_and_lengths_are_bounded():
    options = [f"option {i}" for i in range(MAX_OPTIONS)]
    assert isinstance(validate_request({"question": "q", "options": options}, LIMITS), QuestionRequest)
    too_many = validate_request({"question": "q", "options": [*options, "one more"]}, LIMITS)
    assert reason_of(too_many) == "invalid_options"
    huge = validate_request({"question": "q", "options": ["x" * 100_000] * 26}, LIMITS)
    assert reason_of(huge) == "invalid_options"
    assert len(huge.message) < 300  # the 2.6 MB input is not echoed
    long_question = validate_request({"question": "x" * (MAX_QUESTION_CHARS + 1)}, LIMITS)
    assert reason_of(long_question) == "invalid_question"
    assert validate_request({"question": "q", "window_end": MAX_STAMP_S}, LIMITS).window_end == MAX_STAMP_S


def test_rejections_echo_what_can_be_read():
    result = validate_request({"question": "Where?", "query_id": "id-7", "max_frames": 99}, LIMITS)
    assert (result.reason, result.question, result.query_id) == ("invalid_max_frames", "Where?", "id-7")
    assert reason_of(validate_request(["not", "a", "dict"], LIMITS)) == "invalid_request"


# ------------------------------------------------------------------------------ queue
class Recorder:
    def __init__(self):
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()

    def __call__(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


def test_queue_answers_rejects_busy_and_counts_every_outcome():
    gate = threading.Event()
    recorder = Recorder()

    def handler(request):
        gate.wait(5)
        if request == "refuse":
            raise RejectedError("no_frames", "no camera frames buffered")
        if request == "explode":
            raise RuntimeError("boom")
        return f"answer to {request}"

    queue = QuestionQueue(handler, capacity=3, on_result=recorder)
    tickets = [queue.submit(r) for r in ("a", "refuse", "explode", "b", "c")]
    assert [t.reason for t in tickets] == ["accepted"] * 3 + ["busy"] * 2
    invalid = queue.submit(Rejection("invalid_json", "bad"))
    assert not invalid.accepted and invalid.result(0).reason == "invalid_json"
    gate.set()
    outcomes = [t.result(5) for t in tickets]
    assert [o.reason for o in outcomes] == ["answered", "no_frames", "internal_error", "busy", "busy"]
    assert outcomes[0].answer == "answer to a"
    assert "RuntimeError: boom" in outcomes[2].message
    after = queue.submit("d").result(5)  # the worker survived the exception
    assert after.answer == "answer to d"
    assert queue.stop(5)
    counts = queue.counts()
    assert counts == {"submitted": 7, "accepted": 4, "answered": 2, "rejected_no_frames": 1,
                      "rejected_internal_error": 1, "rejected_busy": 2, "rejected_invalid_json": 1,
                      "pending": 0}
    assert len(recorder.outcomes) == 7  # exactly one delivery per submission
    assert "boom" in queue.last_error


def test_stop_rejects_pending_requests_as_shutting_down():
    started, release = threading.Event(), threading.Event()

    def handler(request):
        started.set()
        release.wait(5)
        return request

    recorder = Recorder()
    queue = QuestionQueue(handler, capacity=4, on_result=recorder)
    running = queue.submit("running")
    started.wait(5)
    waiting = [queue.submit(f"w{i}") for i in range(3)]
    threading.Timer(0.2, release.set).start()
    assert queue.stop(5)
    assert [t.result(0).reason for t in waiting] == ["shutting_down"] * 3
    assert running.result(0).reason == "answered"
    late = queue.submit("late")
    assert late.reason == "shutting_down" and late.result(0).reason == "shutting_down"
    counts = queue.counts()
    assert (counts["rejected_shutting_down"], counts["answered"], counts["pending"]) == (4, 1, 0)
    assert len(recorder.outcomes) == 5
    assert not queue.running


def test_a_failing_callback_does_not_kill_the_worker():
    calls = []

    def on_result(outcome):
        calls.append(outcome.reason)
        raise ValueError("publisher gone")

    queue = QuestionQueue(lambda r: r * 2, capacity=1, on_result=on_result)
    assert queue.submit(2).result(5).answer == 4
    assert queue.submit(3).result(5).answer == 6  # the slot is free before the callback runs
    queue.stop(5)
    assert queue.counts()["callback_errors"] == len(calls) == 2


def test_submit_never_blocks_and_is_thread_safe():
    release = threading.Event()
    queue = QuestionQueue(lambda r: release.wait(5) and r, capacity=2)
    tickets: list = []

    def burst():
        for i in range(200):
            tickets.append(queue.submit(i))

    threads = [threading.Thread(target=burst) for _ in range(4)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.perf_counter() - started < 2.0
    reasons = [t.reason for t in tickets]
    assert reasons.count("accepted") == 2 and reasons.count("busy") == 798
    release.set()
    assert all(t.result(5).answered for t in tickets if t.accepted)
    queue.stop(5)
    counts = queue.counts()
    assert counts["submitted"] == 800 and counts["answered"] == 2 and counts["rejected_busy"] == 798


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
question_like = st.fixed_dictionaries(
    {"question": st.one_of(st.text(max_size=30), st.integers())},
    optional={"options": st.one_of(st.lists(st.text(max_size=10), max_size=30), st.text(max_size=5)),
              "task_type": st.sampled_from(["", "object_counting", "open", "nonsense"]),
              "max_frames": st.one_of(st.integers(-5, 300), st.floats()),
              "window_start": st.one_of(st.none(), st.floats(), st.integers()),
              "window_end": st.one_of(st.none(), st.floats(), st.integers()),
              "query_id": st.text(max_size=200)},
)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(json_values, question_like), mangle=st.integers(0, 3))
def test_any_text_gives_a_request_or_a_known_rejection(value, mangle):
    text = json.dumps(value, allow_nan=True)
    if mangle == 1:
        text = text[: len(text) // 2]
    elif mangle == 2:
        text = "{" * 50 + text
    result = parse_question_text(text, LIMITS)
    if isinstance(result, Rejection):
        assert result.reason in REQUEST_REASONS and result.message
    else:
        assert 0 <= result.max_frames <= LIMITS.max_frames and result.question
        assert len(result.options) <= MAX_OPTIONS
        for bound in (result.window_start, result.window_end):
            assert bound is None or 0.0 <= bound <= MAX_STAMP_S
