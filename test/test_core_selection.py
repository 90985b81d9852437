# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Frame selectors: exact agreement with upstream's sa_sampling fixture, greedy semantics, room scans."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.selection import (
    SpaceAwarePointsSelector,
    make_selector,
    points_voxel_sets,
    uniform_indices,
    voxel_sets_from_points,
)
from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan, render_box
from spatial_mllm_ros.core.voxels import greedy_max_coverage, voxel_sets_from_keys

ROOM = (6.0, 4.0, 3.0)


def reference_greedy(voxel_sets: list[set], k: int) -> list[int]:
    """Upstream's maximum_coverage_sampling, written the straightforward way with Python sets."""
    selected, covered, remaining = [], set(), set(range(len(voxel_sets)))
    for _ in range(k):
        if not remaining:
            break
        best, best_gain = None, -1
        for frame in sorted(remaining):
            gain = len(voxel_sets[frame] - covered)
            if gain > best_gain:
                best, best_gain = frame, gain
        if best is None or best_gain <= 0:
            break
        selected.append(best)
        covered |= voxel_sets[best]
        remaining.remove(best)
    return selected


@pytest.fixture(scope="module")
def sa(fixtures_dir):
    folder = fixtures_dir / "sa_sampling"
    inputs = dict(np.load(folder / "inputs.npz"))
    outputs = dict(np.load(folder / "outputs.npz"))
    meta = json.loads((folder / "fixture_meta.json").read_text())
    return inputs, outputs, meta


@pytest.mark.parametrize("k", [8, 16, 64])
def test_points_route_reproduces_fixture_selection_exactly(sa, k):
    inputs, outputs, meta = sa
    selection = make_selector("space_aware_points").select_points(inputs["world_points"],
                                                                  inputs["world_points_conf"], k)
    assert selection.indices == outputs[f"selected_K{k}"].tolist()
    assert selection.greedy_order == outputs[f"greedy_order_K{k}"].tolist()
    assert selection.stopped_early == meta[f"K{k}"]["stopped_early"]
    assert len(selection.indices) == meta[f"K{k}"]["n_selected"]  # K=64 stops early at 54
    assert selection.total_voxels == meta["total_voxels"] == 1475
    assert selection.voxel_size == float(outputs["voxel_size"])
    assert selection.method == "space_aware_points" and selection.candidates == 64


def test_points_route_intermediates_match_fixture(sa):
    inputs, outputs, _ = sa
    sets, info = points_voxel_sets(inputs["world_points"], inputs["world_points_conf"])
    per_frame = [inputs["world_points"][0, t][outputs["conf_mask"][0, t]] for t in range(64)]
    from_lists, voxel_size, _, _ = voxel_sets_from_points(per_frame)
    assert voxel_size == info.voxel_size
    np.testing.assert_array_equal(from_lists.sizes(), outputs["voxel_set_sizes"])
    assert info.conf_threshold.dtype == np.float32 and info.conf_threshold == outputs["conf_threshold"]
    np.testing.assert_array_equal(info.conf_mask, outputs["conf_mask"][0])
    np.testing.assert_array_equal(info.bbox_min.astype(np.float64), outputs["bbox_min"])
    np.testing.assert_array_equal(info.bbox_max.astype(np.float64), outputs["bbox_max"])
    assert info.voxel_size == float(outputs["voxel_size"])
    np.testing.assert_array_equal(sets.sizes(), outputs["voxel_set_sizes"])
    flat = outputs["voxel_sets_flat"]
    _, ny, nz = info.grid_dims.tolist()
    expected_keys = (flat[:, 1] * ny + flat[:, 2]) * nz + flat[:, 3]
    for frame in range(sets.num_frames):
        np.testing.assert_array_equal(np.sort(sets.frame(frame)), np.sort(expected_keys[flat[:, 0] == frame]))


def test_points_selector_with_predictor_maps_candidates_back(sa):
    inputs, outputs, _ = sa
    # 256 frames: the selector hands every other one (128 uniform candidates) to the predictor.
    frames = [Frame(stamp=i * 0.1, camera_id="c", rgb=np.full((24, 32, 3), i % 256, np.uint8))
              for i in range(256)]
    calls = []

    def predictor(rgb):
        calls.append(rgb.shape)
        order = np.repeat(np.arange(64), 2)  # candidate j shows fixture frame j // 2
        return inputs["world_points"][0][order], inputs["world_points_conf"][0][order]

    selection = SpaceAwarePointsSelector(predictor=predictor).select(frames, 16)
    assert calls == [(128, 24, 32, 3)]
    candidates = uniform_indices(256, 128)
    # duplicated candidates tie; the lowest index (first copy) wins, so picks are 2 * fixture index
    assert selection.indices == [candidates[2 * i] for i in outputs["selected_K16"].tolist()]
    assert selection.candidates == 128
    fallback = make_selector("space_aware_points").select(frames, 4)
    assert fallback.method.startswith("uniform (fallback") and fallback.indices == uniform_indices(256, 4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.integers(0, 40), max_size=15), min_size=0, max_size=12), st.integers(1, 14))
def test_fast_greedy_equals_python_sets_reference(sets, k):
    keys = [np.array(sorted(s), dtype=np.int64) for s in sets]
    expected = reference_greedy(sets, k)
    for key_space in (41, 10**5, None):  # bitmap-scan, scratch-array and sort/compact de-duplication
        for strategy in ("dense", "lazy", "auto"):
            result = greedy_max_coverage(voxel_sets_from_keys(keys, key_space), k, strategy)
            assert result.order == expected
            assert result.covered == len(set().union(*[sets[i] for i in result.order]))
            assert result.stopped_early == (len(expected) < min(k, len(sets)))


def test_coverage_monotone_in_k(sa):
    inputs, _, _ = sa
    selector = make_selector("space_aware_points")
    coverages = [selector.select_points(inputs["world_points"], inputs["world_points_conf"], k).coverage
                 for k in range(1, 65)]
    assert all(b >= a for a, b in itertools.pairwise(coverages))
    assert coverages[-1] == 1.0
    frames = make_room_scan(num_frames=24, width=64, height=48)
    depth_selector = make_selector("space_aware", stride=2)
    room_coverages = [depth_selector.select(frames, k).coverage for k in range(1, 25)]
    assert all(b >= a for a, b in itertools.pairwise(room_coverages))


def surface_cells_seen(frames, cell=0.25, stride=2) -> set:
    """Ground-truth 0.25 m surface patches of the room seen by the frames (exact geometry, re-rendered)."""
    seen = set()
    for frame in frames:
        _, depth = render_box(ROOM, frame.K, frame.pose, frame.width, frame.height)
        pixels = np.mgrid[0:frame.height:stride, 0:frame.width:stride].reshape(2, -1)
        v, u = pixels
        z = depth[v, u]
        fx, fy, cx, cy = frame.K[0, 0], frame.K[1, 1], frame.K[0, 2], frame.K[1, 2]
        camera = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z])
        world = (frame.pose[:3, :3] @ camera).T + frame.pose[:3, 3]
        seen |= set(map(tuple, np.floor(world / cell).astype(int).tolist()))
    return seen


@pytest.mark.parametrize("name, params", [("space_aware", {"stride": 4}),
                                          ("space_aware", {"stride": 4, "voxel_size": 0.2}),
                                          ("space_aware_incremental", {"stride": 4, "voxel_size": 0.2})])
def test_room_scan_space_aware_sees_more_than_uniform(name, params):
    frames = make_room_scan(num_frames=64, width=96, height=72, room=ROOM)
    k = 8
    chosen = make_selector(name, **params).select(frames, k)
    uniform = make_selector("uniform").select(frames, k)
    assert chosen.method == name and len(chosen.indices) == k
    assert chosen.indices == sorted(chosen.indices)
    seen_chosen = len(surface_cells_seen([frames[i] for i in chosen.indices]))
    seen_uniform = len(surface_cells_seen([frames[i] for i in uniform.indices]))
    total = len(surface_cells_seen(frames))
    assert seen_chosen > 1.15 * seen_uniform, (seen_chosen, seen_uniform, total)
    assert chosen.coverage > 0.7
    # the greedy's own coverage of uniform's frames on the same voxels is lower too
    if name == "space_aware":
        sets, _ = make_selector(name, **params).voxel_sets(frames)
        assert chosen.coverage > sets.coverage(uniform.indices)


def test_incremental_matches_python_reference_and_reuses_inserted_frames():
    frames = make_room_scan(num_frames=32, width=64, height=48, room=ROOM, depth_in_mm=False)
    selector = make_selector("space_aware_incremental", voxel_size=0.25, stride=2)
    for frame in frames[:20]:
        assert selector.insert(frame) > 0
    assert len(selector) == 20
    selection = selector.select(frames, 6)
    assert len(selector) == 32
    python_sets = [set(map(tuple, selector.frame_coords(frame).T.tolist())) for frame in frames]
    points = make_selector("space_aware", stride=2).frame_points(frames[3])  # per-frame row layout
    coords = np.floor(points / np.float32(0.25)).astype(np.int64).T
    # same voxels up to float32 rounding of points sitting on a voxel face
    assert np.mean(np.all(coords == selector.frame_coords(frames[3]), axis=0)) > 0.97
    assert selection.greedy_order == reference_greedy(python_sets, 6)
    assert selection.total_voxels == len(set().union(*python_sets))
    assert selector.forget_before(frames[10].stamp) == 10 and len(selector) == 22
    selector.clear()
    assert len(selector) == 0
    small_cache = make_selector("space_aware_incremental", voxel_size=0.25, stride=2, max_cached=5)
    again = small_cache.select(frames, 6)  # more candidates than cached frames: still consistent
    assert again.greedy_order == selection.greedy_order and len(small_cache) == 5


def test_space_aware_falls_back_to_uniform_without_geometry_and_validates_k():
    frames = [Frame(stamp=float(i), camera_id="c", rgb=np.zeros((8, 8, 3), np.uint8)) for i in range(10)]
    for name in ("space_aware", "space_aware_incremental"):
        selection = make_selector(name).select(frames, 4)
        assert selection.indices == uniform_indices(10, 4) == [0, 3, 6, 9]
        assert selection.method.startswith("uniform (fallback: 10 of 10 candidate frames lack depth/pose/K")
    with pytest.raises(ValueError, match="positive"):
        make_selector("uniform").select(frames, 0)
    with pytest.raises(ValueError, match="unknown frame selector"):
        make_selector("random")
    with pytest.raises(ValueError, match="bad parameters"):
        make_selector("uniform", stride=2)
    assert make_selector("uniform").select([], 4).indices == []


def test_static_camera_stops_early_and_fill_tops_up():
    frames = make_room_scan(num_frames=10, width=32, height=24, room=ROOM, dwell_fraction=1.0)
    still = [Frame(stamp=f.stamp, camera_id="c", rgb=f.rgb, depth=frames[0].depth, depth_scale=0.001,
                   K=frames[0].K, pose=frames[0].pose) for f in frames]
    selection = make_selector("space_aware").select(still, 4)
    assert selection.indices == [0] and selection.stopped_early and selection.coverage == 1.0
    filled = make_selector("space_aware", fill=True).select(still, 4)
    assert len(filled.indices) == 4 and 0 in filled.indices and filled.method.endswith("uniform fill")


def test_mixed_cameras_keep_frame_order_through_batching():
    wide = make_room_scan(num_frames=12, width=64, height=48, room=ROOM, fov_deg=80.0, camera_id="wide")
    narrow = make_room_scan(num_frames=12, width=48, height=40, room=ROOM, fov_deg=50.0, camera_id="narrow",
                            depth_in_mm=False)
    mixed = [frame for pair in zip(wide, narrow, strict=True) for frame in pair]
    selector = make_selector("space_aware", stride=2)
    forward, size_forward = selector.voxel_sets(mixed)
    backward, size_backward = selector.voxel_sets(mixed[::-1])
    assert size_forward == size_backward
    n = len(mixed)
    for i in range(n):
        np.testing.assert_array_equal(np.sort(forward.frame(i)), np.sort(backward.frame(n - 1 - i)))
    assert forward.sizes()[0] != forward.sizes()[1]  # the two cameras really differ


def test_frames_from_buffer_feed_the_selector():
    from spatial_mllm_ros.core.buffer import FrameBuffer

    scan = make_room_scan(num_frames=40, width=64, height=48, room=ROOM)
    buffer = FrameBuffer()
    buffer.set_intrinsics("camera", scan[0].K)
    for frame in scan:
        assert buffer.add_image("camera", frame.stamp, frame.rgb) == "accepted"
        assert buffer.add_depth("camera", frame.stamp + 0.005, frame.depth) == "accepted"  # mm default
        assert buffer.add_pose(frame.stamp, frame.pose) == "accepted"
    frames = buffer.frames("camera")
    assert all(f.has_geometry for f in frames)
    from_buffer = make_selector("space_aware", stride=2).select(frames, 6)
    direct = make_selector("space_aware", stride=2).select(scan, 6)
    assert from_buffer.indices == direct.indices and from_buffer.coverage == direct.coverage


def test_broken_geometry_is_skipped_not_fatal():
    frames = make_room_scan(num_frames=16, width=32, height=24, room=ROOM)
    broken = list(frames)
    bad_pose = np.array(frames[3].pose)
    bad_pose[0, 0] = np.nan
    broken[3] = Frame(stamp=frames[3].stamp, camera_id="camera", rgb=frames[3].rgb, depth=frames[3].depth,
                      depth_scale=0.001, K=frames[3].K, pose=bad_pose)
    bad_k = np.array(frames[5].K)
    bad_k[0, 0] = 0.0
    broken[5] = Frame(stamp=frames[5].stamp, camera_id="camera", rgb=frames[5].rgb, depth=frames[5].depth,
                      depth_scale=0.001, K=bad_k, pose=frames[5].pose)
    for name in ("space_aware", "space_aware_incremental"):
        selection = make_selector(name, stride=2, voxel_size=0.25).select(broken, 8)
        assert 3 not in selection.indices and 5 not in selection.indices and selection.method == name
    far = [Frame(stamp=f.stamp, camera_id="c", rgb=f.rgb, depth=np.zeros_like(f.depth), depth_scale=0.001,
                 K=f.K, pose=f.pose) for f in frames]
    for name in ("space_aware", "space_aware_incremental"):
        selection = make_selector(name).select(far, 4)
        assert selection.method == "uniform (fallback: no depth pixel in range)"
        assert selection.indices == uniform_indices(16, 4)
    garbage = SpaceAwarePointsSelector(predictor=lambda rgb: (np.zeros((2, 3)), np.zeros(2)))
    assert garbage.select(frames, 4).method.startswith("uniform (fallback: bad predictor output")


def test_large_grids_use_the_sorting_path_with_the_same_sets():
    rng = np.random.default_rng(0)
    frames = [rng.uniform(0.0, 5.0, size=(300, 3)).astype(np.float32) for _ in range(6)]
    frames[2][0] = (4000.0, 3000.0, 2000.0)  # a far outlier makes the grid far larger than 2**24 cells
    sets, voxel_size, origin, dims = voxel_sets_from_points(frames, voxel_size=0.05)
    assert int(np.prod(dims.astype(object))) > 2**24
    for i, points in enumerate(frames):
        coords = np.floor((points - origin) / np.float32(voxel_size)).astype(int)
        expected = {tuple(c) for c in coords.tolist()}
        assert sets.sizes()[i] == len(expected)
    small = [p[p[:, 0] < 100] for p in frames]
    dense, _, _, _ = voxel_sets_from_points(small, voxel_size=0.05)
    assert greedy_max_coverage(dense, 3).order == reference_greedy(
        [set(dense.frame(i).tolist()) for i in range(6)], 3)
