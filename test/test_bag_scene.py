# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The synthetic scene's ground truth, recomputed independently from the scene definition.

Distances, sizes, counts, directions, routes and appearance orders in questions.json are recomputed
from scene.json with separate code; rendered depth is checked against per-pixel analytic ray casting
and against the room's surfaces; everything must be identical for the same seed.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from spatial_mllm_ros.bag import scene as scene_module
from spatial_mllm_ros.bag.scene import make_scene, write_scene
from spatial_mllm_ros.core.prompts import TASK_TYPES, split_option

SEED, WIDTH, HEIGHT, FRAMES = 3, 160, 120, 20


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    paths = write_scene(root, seed=SEED, width=WIDTH, height=HEIGHT, num_frames=FRAMES)
    return paths, json.loads(paths.scene_json.read_text()), json.loads(paths.questions.read_text())


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=SEED, width=WIDTH, height=HEIGHT, num_frames=FRAMES)


def _objects(description):
    return {o["name"]: o for o in description["objects"]}


def _gap_distance(a, b):
    """Closest-point distance of two boxes given as centre/size, written out per axis."""
    total = 0.0
    for axis in range(3):
        a_lo, a_hi = a["center"][axis] - a["size"][axis] / 2, a["center"][axis] + a["size"][axis] / 2
        b_lo, b_hi = b["center"][axis] - b["size"][axis] / 2, b["center"][axis] + b["size"][axis] / 2
        gap = max(0.0, b_lo - a_hi, a_lo - b_hi)
        total += gap * gap
    return math.sqrt(total)


def _angle(origin, toward, other):
    hx, hy = toward[0] - origin[0], toward[1] - origin[1]
    vx, vy = other[0] - origin[0], other[1] - origin[1]
    return math.degrees(math.atan2(hx * vy - hy * vx, hx * vx + hy * vy))


def _truth_text(row):
    return dict(split_option(o) for o in row["options"])[row["ground_truth"]]


def test_files_and_rows_are_in_vsibench_format(written):
    paths, description, questions = written
    assert paths.bag.is_dir() and (paths.bag / "metadata.yaml").is_file()
    assert len(description["frames"]) == FRAMES
    keys = {"id", "dataset", "scene_name", "question_type", "question", "options", "ground_truth"}
    for row in questions:
        assert keys <= set(row)
        assert row["question_type"] in TASK_TYPES
        assert row["scene_name"] == description["name"]
        assert isinstance(row["ground_truth"], str)
    assert [row["id"] for row in questions] == list(range(len(questions)))
    present = {row["question_type"] for row in questions}
    assert {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
            "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
            "object_rel_direction_hard", "route_planning"} <= present


def test_bag_is_recorded_like_a_realsense_robot(written):
    paths, description, _ = written
    with AnyReader([paths.bag]) as reader:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        durability = {c.topic: [q.durability.name for q in c.ext.offered_qos_profiles]
                      for c in reader.connections}
        log_times = {}
        for connection, log_time, _ in reader.messages():
            log_times.setdefault(connection.topic, []).append(log_time)
    # odom -> base_link three times per camera frame (plus the last frame), map -> odom at 5 Hz over 1.9 s
    odom_messages, map_messages = 3 * (FRAMES - 1) + 1, 11
    assert counts == {
        "/camera/camera/color/image_raw": ("sensor_msgs/msg/Image", FRAMES),
        "/camera/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", FRAMES),
        "/camera/camera/aligned_depth_to_color/image_raw": ("sensor_msgs/msg/Image", FRAMES),
        "/camera/camera/aligned_depth_to_color/camera_info": ("sensor_msgs/msg/CameraInfo", FRAMES),
        "/tf": ("tf2_msgs/msg/TFMessage", odom_messages + map_messages),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 2),
    }
    assert durability["/tf_static"] == ["TRANSIENT_LOCAL"] and durability["/tf"] == ["VOLATILE"]
    assert description["bag"]["pose_source"] == "tf" and description["bag"]["depth_encoding"] == "16UC1"
    # received after their stamps: colour 8 ms, tf 30 ms late, so each frame's tf comes after its image
    stamps = [f["stamp_ns"] for f in description["frames"]]
    assert log_times["/camera/camera/color/image_raw"] == [s + 8_000_000 for s in stamps]
    assert log_times["/tf_static"][0] == stamps[0]


def test_pose_topic_layout_keeps_the_original_four_topics(tmp_path):
    paths = write_scene(tmp_path, seed=1, width=32, height=24, num_frames=3, pose_source="pose_topic")
    with AnyReader([paths.bag]) as reader:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    assert counts == {
        "/camera/color/image_raw": ("sensor_msgs/msg/Image", 3),
        "/camera/depth/image_raw": ("sensor_msgs/msg/Image", 3),
        "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", 3),
        "/camera/pose": ("geometry_msgs/msg/PoseStamped", 3),
    }


def test_split_recording_lists_its_files_in_order(tmp_path):
    import yaml

    paths = write_scene(tmp_path, seed=1, width=32, height=24, num_frames=25, storage="mcap",
                        max_bag_duration_s=0.2)
    metadata = yaml.safe_load((paths.bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    names = metadata["relative_file_paths"]
    assert len(names) == 13 and names[:3] == ["bag_0.mcap", "bag_1.mcap", "bag_2.mcap"]
    assert names[10:] == ["bag_10.mcap", "bag_11.mcap", "bag_12.mcap"]  # recording order, not alphabetical
    assert sorted(p.name for p in paths.bag.iterdir()) == sorted([*names, "metadata.yaml"])
    starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in metadata["files"]]
    assert starts == sorted(starts) and sum(f["message_count"] for f in metadata["files"]) == \
        metadata["message_count"]
    with AnyReader([paths.bag]) as reader:  # rosbags reads the merged metadata like rosbag2's own
        assert {c.topic: c.msgcount for c in reader.connections}["/camera/camera/color/image_raw"] == 25


def test_numeric_ground_truth_recomputed(written):
    _, description, questions = written
    objects = _objects(description)
    by_category = {}
    for obj in description["objects"]:
        by_category.setdefault(obj["category"], []).append(obj)
    checked = 0
    for row in questions:
        names = row["objects"]
        if row["question_type"] == "object_counting":
            category = row["question"].split("How many ")[1].split("(s)")[0]
            assert int(row["ground_truth"]) == len(by_category[category]) >= 2
        elif row["question_type"] == "object_abs_distance":
            a, b = objects[names[0]], objects[names[1]]
            assert float(row["ground_truth"]) == pytest.approx(_gap_distance(a, b), abs=0.005)
            assert f"the {a['category']} and the {b['category']}" in row["question"]
        elif row["question_type"] == "object_size_estimation":
            assert int(row["ground_truth"]) == round(max(objects[names[0]]["size"]) * 100)
        elif row["question_type"] == "room_size_estimation":
            width, depth, _ = description["room_size"]
            assert float(row["ground_truth"]) == pytest.approx(width * depth, abs=0.05)
        else:
            continue
        checked += 1
    assert checked >= 6


def test_choice_ground_truth_recomputed(written):
    _, description, questions = written
    objects = _objects(description)
    checked = 0
    for row in questions:
        involved = [objects[name] for name in row["objects"]]
        task = row["question_type"]
        if task == "object_rel_distance":
            target, candidates = involved[0], involved[1:]
            distances = {c["category"]: _gap_distance(target, c) for c in candidates}
            assert _truth_text(row) == min(distances, key=distances.get)
        elif task.startswith("object_rel_direction"):
            standing, facing, query = (o["center"] for o in involved)
            angle = _angle(standing, facing, query)
            side = "left" if angle > 0 else "right"
            truth = _truth_text(row)
            if task.endswith("easy"):
                assert truth == side
            elif task.endswith("medium"):
                assert truth == ("back" if abs(angle) >= 135 else side)
            else:
                assert truth == ("front-" if abs(angle) < 90 else "back-") + side
        elif task == "route_planning":
            start, facing, waypoint, goal = (o["center"] for o in involved)
            first = _angle(start, facing, waypoint)
            # second turn: heading start->waypoint, then waypoint->goal
            heading = (waypoint[0] + (waypoint[0] - start[0]), waypoint[1] + (waypoint[1] - start[1]))
            second = _angle(waypoint, heading, goal)
            expected = ["Turn Back" if abs(a) >= 150 else ("Turn Left" if a > 0 else "Turn Right")
                        for a in (first, second)]
            assert _truth_text(row) == ", ".join(expected)
        elif task == "obj_appearance_order":
            order = _truth_text(row).split(", ")
            firsts = []
            for category in order:
                frames = [o["first_frame"] for o in description["objects"]
                          if o["category"] == category and o["first_frame"] is not None]
                firsts.append(min(frames))
            assert firsts == sorted(firsts) and len(set(firsts)) == 4
        else:
            continue
        checked += 1
    assert checked >= 9


def test_appearance_frames_follow_the_per_frame_visibility(written):
    _, description, _ = written
    threshold = description["appearance_min_pixels"]
    for obj in description["objects"]:
        counts = [frame["visible_pixels"].get(obj["name"], 0) for frame in description["frames"]]
        enough = [i for i, count in enumerate(counts) if count >= threshold]
        assert obj["first_frame"] == (enough[0] if enough else None)
        assert obj["max_visible_pixels"] == max(counts)


def test_target_distance_decreases_and_is_point_to_box(written):
    _, description, _ = written
    target = _objects(description)[description["target"]["name"]]
    lower = np.asarray(target["center"]) - np.asarray(target["size"]) / 2
    upper = np.asarray(target["center"]) + np.asarray(target["size"]) / 2
    distances = []
    for frame in description["frames"]:
        camera = np.asarray(frame["pose"])[:3, 3]
        expected = float(np.linalg.norm(camera - np.clip(camera, lower, upper)))
        assert frame["target_distance_m"] == pytest.approx(expected, abs=1e-5)
        distances.append(expected)
    assert np.all(np.diff(distances) < 0)
    assert description["frames"][0]["target_progress"] == 0.0
    assert description["frames"][-1]["target_progress"] == 1.0
    # the walk ends in front of the target, which fills the middle of the last image
    assert description["frames"][-1]["visible_pixels"][target["name"]] > 0.2 * WIDTH * HEIGHT


def _analytic_depth(scene, pose, u, v):
    """z-depth of pixel (u, v) by intersecting its ray with every plane, one at a time."""
    k = scene.intrinsics
    ray_camera = np.array([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], 1.0])
    origin, direction = pose[:3, 3], pose[:3, :3] @ ray_camera
    best, best_id = math.inf, 0
    for axis in range(3):  # room: inner faces at 0 and size
        for plane in (0.0, scene.room_size[axis]):
            if direction[axis] != 0:
                t = (plane - origin[axis]) / direction[axis]
                point = origin + t * direction
                inside = all(-1e-9 <= point[a] <= scene.room_size[a] + 1e-9 for a in range(3) if a != axis)
                if t > 0 and inside and t < best:
                    best = t
    for obj in scene.objects:
        lower, upper = obj.lower, obj.upper
        for axis, plane in itertools.product(range(3), range(2)):
            if direction[axis] == 0:
                continue
            t = ((upper if plane else lower)[axis] - origin[axis]) / direction[axis]
            point = origin + t * direction
            on_face = all(lower[a] - 1e-9 <= point[a] <= upper[a] + 1e-9 for a in range(3) if a != axis)
            if t > 0 and on_face and t < best:
                best, best_id = t, obj.object_id
    return best, best_id


def test_rendered_depth_matches_analytic_ray_casting(scene):
    rng = np.random.default_rng(0)
    for index in (0, FRAMES // 2, FRAMES - 1):
        _, depth, ids = scene.render(index)
        for u, v in zip(rng.integers(0, WIDTH, 25), rng.integers(0, HEIGHT, 25), strict=True):
            expected, expected_id = _analytic_depth(scene, scene.poses[index], int(u), int(v))
            assert depth[v, u] == pytest.approx(expected, rel=1e-6)
            assert ids[v, u] == expected_id
        # the principal point of the last frame looks straight at the target's face
        if index == FRAMES - 1:
            centre = ids[HEIGHT // 2, WIDTH // 2]
            assert centre == scene.target_id


def test_room_pixels_unproject_onto_the_room_surfaces(scene):
    _, depth, ids = scene.render(FRAMES // 2)
    k, pose = scene.intrinsics, scene.poses[FRAMES // 2]
    v, u = np.nonzero(ids == 0)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones(u.size)], axis=1)
    points = (rays * depth[v, u, None]) @ pose[:3, :3].T + pose[:3, 3]
    size = np.asarray(scene.room_size)
    on_surface = np.min(np.minimum(np.abs(points), np.abs(points - size)), axis=1)
    assert u.size > 100
    assert on_surface.max() < 1e-4


def test_same_seed_same_scene_other_seed_differs(scene):
    again = make_scene(seed=SEED, width=WIDTH, height=HEIGHT, num_frames=FRAMES)
    assert again.objects == scene.objects and np.array_equal(again.poses, scene.poses)
    assert np.array_equal(again.render(7)[0], scene.render(7)[0])
    assert scene_module.make_questions(again) == scene_module.make_questions(scene)
    other = make_scene(seed=SEED + 1, width=WIDTH, height=HEIGHT, num_frames=FRAMES)
    assert other.objects != scene.objects


def test_colours_are_distinct_per_object(scene):
    colours = [obj.color for obj in scene.objects]
    assert len(set(colours)) == len(colours)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="num_frames"):
        make_scene(num_frames=1)
    with pytest.raises(ValueError, match="image size"):
        make_scene(width=8)
    write_scene(tmp_path, seed=1, width=32, height=24, num_frames=2)
    with pytest.raises(ValueError, match="already exists"):
        write_scene(tmp_path, seed=1, width=32, height=24, num_frames=2)


def test_cli_main(tmp_path, capsys):
    assert scene_module.main([str(tmp_path), "--frames", "3", "--size", "48x32", "--storage", "mcap"]) == 0
    assert "3 frames, 48x32, mcap" in capsys.readouterr().out
    assert (tmp_path / "bag" / "bag.mcap").is_file()
    assert scene_module.main([str(tmp_path), "--frames", "3"]) == 2
    assert "already exists" in capsys.readouterr().err
