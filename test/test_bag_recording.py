# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""rosbag2 as robots leave it: rosbag2's own bags, split files, damage, service events, Humble sqlite3."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.writer import Writer as McapWriter
from rosbags.highlevel import AnyReader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.bag.reader import BagReadError, read_frames
from spatial_mllm_ros.bag.recording import open_recording
from spatial_mllm_ros.bag.scene import write_scene

ROSBAG2_DATA = Path(__file__).parent / "data" / "rosbag2"
FRAMES = 30
COLOUR = "/camera/camera/color/image_raw"


@pytest.fixture(scope="module")
def split_scene(tmp_path_factory):
    """A tf-only robot recording split into 12 mcap files (0.25 s each over 3 s)."""
    return write_scene(tmp_path_factory.mktemp("split"), seed=4, width=48, height=36, num_frames=FRAMES,
                       storage="mcap", max_bag_duration_s=0.25)


@pytest.fixture(scope="module")
def intact_frames(split_scene):
    return list(read_frames(split_scene.bag))


def _images_per_file(bag: Path) -> dict[str, int]:
    counts = {}
    for file in sorted(bag.glob("*.mcap")):
        reader = McapReader(file)
        reader.open()
        try:
            counts[file.name] = sum(1 for c in reader.connections if c.topic == COLOUR
                                    for _ in reader.messages([c]))
        finally:
            reader.close()
    return counts


def test_rosbag2_service_event_recording_reads_its_topics_without_parsing_the_service_schema():
    bag = ROSBAG2_DATA / "topics_and_service_events"
    with pytest.raises(Exception, match="Could not parse"):  # what rosbags itself does with this bag
        AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)).open()
    recording = open_recording(bag)
    assert recording.topics["/test_service1/_service_event"] == "test_msgs/srv/BasicTypes_Event"
    messages = list(recording.messages({"/test_topic1", "/test_topic2"}))
    assert [m[0] for m in messages] == ["/test_topic1", "/test_topic2"] and recording.damage == []
    strings = recording.deserialize(messages[0][3], messages[0][1])
    assert strings.string_value_default1 == "Hello world!"
    (event,) = list(recording.messages({"/test_service1/_service_event"}))[:1]
    with pytest.raises(ValueError, match=r"^the recorded definition of test_msgs/srv/BasicTypes_Event cannot "
                                         r"be parsed \(TypesysError: Could not parse:\)$"):
        recording.deserialize(event[3], event[1])


def test_rosbag2_split_recording_is_read_in_metadata_order():
    bag = ROSBAG2_DATA / "wbag"
    recording = open_recording(bag)
    assert [p.name for p in recording.files] == [f"wbag_{i}.mcap" for i in range(5)]
    log_times = [m[2] for m in recording.messages()]
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert len(log_times) == metadata["message_count"] == 6074
    assert log_times == sorted(log_times) and recording.damage == []


def test_twelve_split_files_read_in_recording_order_with_tf_poses(split_scene, intact_frames):
    names = yaml.safe_load((split_scene.bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"][
        "relative_file_paths"]
    assert len(names) == 12 and names[10] == "bag_10.mcap"
    stamps = [f.stamp for f in intact_frames]
    assert len(stamps) == FRAMES and stamps == sorted(stamps)
    assert all(f.pose is not None and f.depth is not None and f.K is not None for f in intact_frames)


def test_a_damaged_middle_split_is_skipped_and_the_rest_is_read(split_scene, intact_frames, tmp_path, caplog):
    bag = tmp_path / "bag"
    shutil.copytree(split_scene.bag, bag)
    per_file = _images_per_file(bag)
    damaged = bag / "bag_5.mcap"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 3])
    frames = []
    lost = r"bag_5\.mcap: (cannot be read|damaged after)"
    with caplog.at_level(logging.WARNING), pytest.raises(BagReadError, match=lost):
        frames.extend(read_frames(bag))
    assert per_file["bag_5.mcap"] >= 2 and FRAMES - per_file["bag_5.mcap"] <= len(frames) < FRAMES
    # every frame of the later files is there, identical to the intact read
    intact = {f.stamp: f for f in intact_frames}
    later = intact_frames[-sum(per_file[f"bag_{i}.mcap"] for i in range(6, 12)):]
    assert [f.stamp for f in frames[-len(later):]] == [f.stamp for f in later]
    missing = sorted(set(intact) - {f.stamp for f in frames})
    for frame in frames:
        np.testing.assert_array_equal(frame.rgb, intact[frame.stamp].rgb)
        assert frame.pose is not None  # tf interpolates across the hole, as tf2 would
        if frame.stamp < missing[0] - 0.15 or frame.stamp > missing[-1] + 0.15:  # tf samples all intact
            np.testing.assert_allclose(frame.pose, intact[frame.stamp].pose, atol=1e-9)
    assert "bag_5.mcap" in caplog.text


def test_a_killed_recording_without_metadata_is_read_in_recording_order(split_scene, intact_frames, tmp_path,
                                                                         caplog):
    bag = tmp_path / "killed"
    shutil.copytree(split_scene.bag, bag)
    (bag / "metadata.yaml").unlink()
    last = bag / "bag_11.mcap"  # the file being written when the recorder died: no summary, no footer
    data = last.read_bytes()
    last.write_bytes(data[: len(data) * 2 // 3])
    frames = []
    lost = r"bag_11\.mcap: (cannot be read|damaged after)"
    with caplog.at_level(logging.WARNING), pytest.raises(BagReadError, match=lost):
        frames.extend(read_frames(bag))
    assert "without metadata.yaml" in caplog.text and "bag_0.mcap, bag_1.mcap, bag_2.mcap" in caplog.text
    stamps = [f.stamp for f in frames]
    assert stamps == sorted(stamps)  # alphabetical order would put bag_10 before bag_2
    assert stamps == [f.stamp for f in intact_frames[: len(frames)]] and len(frames) >= FRAMES - 3


def test_garbage_metadata_is_named_and_the_files_are_read(split_scene, intact_frames, tmp_path, caplog):
    bag = tmp_path / "garbage"
    shutil.copytree(split_scene.bag, bag)
    (bag / "metadata.yaml").write_bytes(b"\xff\xfe\x00 not yaml at all")
    with caplog.at_level(logging.WARNING):
        frames = list(read_frames(bag))
    assert f"{bag / 'metadata.yaml'} is unreadable (UnicodeDecodeError" in caplog.text
    assert [f.stamp for f in frames] == [f.stamp for f in intact_frames]


def _with_service_events(source_bag: Path, target: Path) -> None:
    """Rewrite a recording into one .mcap with a Jazzy service-event channel rosbags cannot parse."""
    service_bag = ROSBAG2_DATA / "topics_and_service_events"
    service = next(c for c in open_recording(service_bag).connections()
                   if c.topic == "/test_service1/_service_event")
    events = [m for m in open_recording(service_bag).messages({service.topic})]
    recording = open_recording(source_bag)
    with target.open("wb") as stream:
        writer = McapWriter(stream)
        writer.start(profile="ros2", library="test")
        channels = {}
        for connection in recording.connections():
            if connection.topic not in channels:
                schema = writer.register_schema(connection.msgtype, "ros2msg", connection.msgdef.encode())
                channels[connection.topic] = writer.register_channel(connection.topic, "cdr", schema)
        schema = writer.register_schema(service.msgtype, "ros2msg", service.msgdef.encode())
        service_channel = writer.register_channel(service.topic, "cdr", schema)
        messages = list(recording.messages())
        start = messages[0][2]
        for i, (_, _, _, raw) in enumerate(events):
            writer.add_message(service_channel, start + i * 1000, raw, start + i * 1000)
        for topic, _, log_time, raw in messages:
            writer.add_message(channels[topic], log_time, bytes(raw), log_time)
        writer.finish()


def test_unparseable_service_event_schema_next_to_good_images(split_scene, intact_frames, tmp_path):
    target = tmp_path / "with_services.mcap"
    _with_service_events(split_scene.bag, target)
    with pytest.raises(Exception, match="Could not parse"):
        AnyReader([target], default_typestore=get_typestore(Stores.ROS2_JAZZY)).open()
    details = {}
    frames = list(read_frames(target, details=details))
    assert [f.stamp for f in frames] == [f.stamp for f in intact_frames]
    for got, want in zip(frames, intact_frames, strict=True):
        np.testing.assert_allclose(got.pose, want.pose, atol=1e-12)
    assert details["topics"].pose_kind == "tf" and details["skipped"] == {}


def humble_sqlite_bag(source: Path, target: Path) -> Path:
    """A copy of a rosbags-written sqlite3 bag as ROS 2 Humble stores it: no message definitions.

    Humble's rosbag2 (sqlite3 schema version 3, metadata version 5) has no ``message_definitions``
    table and no ``type_description_hash`` column.
    """
    shutil.copytree(source, target)
    (database,) = target.glob("*.db3")
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE message_definitions")
        connection.execute("ALTER TABLE topics DROP COLUMN type_description_hash")
        connection.execute("UPDATE schema SET schema_version = 3")
    metadata = yaml.safe_load((target / "metadata.yaml").read_text())
    info = metadata["rosbag2_bagfile_information"]
    info["version"] = 5
    for entry in info["topics_with_message_count"]:
        entry["topic_metadata"].pop("type_description_hash", None)
    (target / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    return target


def test_humble_sqlite_without_definitions_is_read_with_jazzy_types(tmp_path):
    paths = write_scene(tmp_path / "scene", seed=2, width=32, height=24, num_frames=6)
    bag = humble_sqlite_bag(paths.bag, tmp_path / "humble")
    assert {c.msgdef_format for c in open_recording(bag).connections()} == {""}
    frames = list(read_frames(bag))
    reference = list(read_frames(paths.bag))
    assert len(frames) == len(reference) == 6
    for got, want in zip(frames, reference, strict=True):
        np.testing.assert_array_equal(got.rgb, want.rgb)
        np.testing.assert_allclose(got.pose, want.pose, atol=1e-12)
