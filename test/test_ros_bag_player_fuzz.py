# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Damaged recordings never crash the bag player: generated corruptions of a robot recording.

A player's input is a recording, so the fuzz mutates one: bytes flipped, files cut short, chunks
overwritten, split files deleted, ``metadata.yaml`` replaced by garbage (hypothesis, derandomized: the
same cases every run). In process, the player's reading path (``open_bag`` + every message of every
topic) must end in one of its documented errors or read through, with the damage noted; as real
processes, a sample of the same corruptions must end with a documented exit code and a reason, never
a traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ros_harness import NodeProcess, random_domain_id

from spatial_mllm_ros.bag.recording import BagReadError, NotABagError
from spatial_mllm_ros.bag.scene import write_scene
from spatial_mllm_ros.ros.bag_player import open_bag

DOCUMENTED_ERRORS = (BagReadError, NotABagError, FileNotFoundError)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A robot-layout recording (tf, aligned depth) split into several mcap files."""
    scene = write_scene(tmp_path_factory.mktemp("fuzz_scene") / "room", seed=3, width=64, height=48,
                        num_frames=24, storage="mcap", max_bag_duration_s=0.5)
    files = sorted(scene.bag.glob("*.mcap"))
    assert len(files) >= 3, files
    return scene.bag


corruptions = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)),
                                        min_size=1, max_size=64)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=4096)),
    st.tuples(st.just("delete"), st.integers(0, 10)),
    st.tuples(st.just("metadata"), st.binary(max_size=2048)),
)


def _corrupt(source: Path, target: Path, corruption, file_choice: int) -> None:
    shutil.copytree(source, target)
    files = sorted(target.glob("*.mcap"))
    victim = files[file_choice % len(files)]
    kind = corruption[0]
    if kind == "metadata":
        (target / "metadata.yaml").write_bytes(corruption[1])
        return
    if kind == "delete":
        files[corruption[1] % len(files)].unlink()
        return
    data = bytearray(victim.read_bytes())
    if kind == "flip":
        for where, xor in corruption[1]:
            data[min(int(where * len(data)), len(data) - 1)] ^= xor
    elif kind == "truncate":
        data = data[:int(corruption[1] * len(data))]
    else:
        start = int(corruption[1] * len(data))
        data[start:start + len(corruption[2])] = corruption[2]
    victim.write_bytes(bytes(data))


def _play_through(bag: Path) -> tuple[int, list[str]]:
    """What the player does with a recording, without DDS: open, list topics, read every message."""
    recording = open_bag(bag)
    topics = {connection.topic for connection in recording.connections()}
    count = sum(1 for _ in recording.messages(topics))
    return count, list(recording.damage)


def test_intact_recording_reads_every_message(recording):
    count, damage = _play_through(recording)
    assert damage == []
    assert count > 24 * 3  # images, depth, camera_info and tf of 24 frames


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corruption=corruptions, file_choice=st.integers(0, 10))
def test_corrupt_recordings_end_in_documented_errors(recording, tmp_path_factory, corruption, file_choice):
    bag = tmp_path_factory.mktemp("corrupt") / "bag"
    _corrupt(recording, bag, corruption, file_choice)
    try:
        count, damage = _play_through(bag)
    except DOCUMENTED_ERRORS as error:
        assert str(error)  # a reason, never an empty message
        return
    assert count >= 0
    assert all(isinstance(item, str) and item for item in damage)


@pytest.mark.parametrize("corruption", [
    ("truncate", 0.5),
    ("flip", [(0.0, 0xFF), (0.3, 0x55), (0.6, 0x0F)]),
    ("metadata", b"\xff\xfe: [unclosed"),
    ("overwrite", 0.0, b"not an mcap file at all" * 8),
])
def test_player_process_on_a_corrupt_recording_exits_with_a_reason(recording, tmp_path, corruption):
    bag = tmp_path / "bag"
    for index in range(3):  # every split damaged the same way: the worst case
        _corrupt(recording, tmp_path / f"copy{index}", corruption, index)
    shutil.copytree(tmp_path / "copy0", bag)
    for index in (1, 2):
        name = sorted((tmp_path / f"copy{index}").glob("*.mcap"))[index].name
        shutil.copy2(tmp_path / f"copy{index}" / name, bag / name)
    player = NodeProcess("spatial_mllm_ros.ros.bag_player",
                         ["-p", f"bag:={bag}", "-p", "rate:=0.0", "-p", "start_delay_s:=0.0"],
                         random_domain_id(), tmp_path / "player.log")
    player.process.wait(timeout=60)
    code = player.stop()
    output = player.output()
    assert "Traceback" not in output, output
    assert code in (0, 1, 2, 3), output
    if code == 0:  # played what was readable and said what was skipped
        assert "played" in output and ("damaged" in output or "metadata.yaml" in output), output
    else:
        assert "error" in output.lower() or "cannot" in output.lower() or "nothing" in output.lower(), output
