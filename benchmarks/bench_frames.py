# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of camera buffering and frame selection (``spatial-mllm-ros bench frames``).

Figures: space-aware selection of K=16 of N=128 640x480 RGB-D frames (median ms, depth stride, coverage
against uniform on the same voxels), the incremental selector (ms per inserted frame, ms per query),
FrameBuffer ingest of 640x480 rgb8 + 16UC1 depth messages (frames/s on one thread, bytes held against
the bound), and side-by-side ratios against a straightforward Python-sets implementation of the same
greedy (written here, upstream's style).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from spatial_mllm_ros.core.buffer import FrameBuffer
from spatial_mllm_ros.core.frames import depth_view, rgb_view
from spatial_mllm_ros.core.geometry import unproject_depth_batch
from spatial_mllm_ros.core.selection import make_selector, uniform_indices
from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
from spatial_mllm_ros.core.voxels import greedy_max_coverage, voxel_coords

WIDTH, HEIGHT, NUM_FRAMES, K = 640, 480, 128, 16


def add_arguments(parser) -> None:
    parser.add_argument("--stride", type=int, default=8, help="depth pixel stride for unprojection")
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions per figure")
    parser.add_argument("--ingest-frames", type=int, default=3000, help="messages pushed through the buffer")


def reference_sets_greedy(voxel_sets: list[set], k: int) -> list[int]:
    """Upstream's maximum_coverage_sampling with Python sets (the baseline)."""
    selected, covered, remaining = [], set(), set(range(len(voxel_sets)))
    for _ in range(k):
        if not remaining:
            break
        best, best_gain = None, -1
        for frame in remaining:
            gain = len(voxel_sets[frame] - covered)
            if gain > best_gain:
                best, best_gain = frame, gain
        if best is None or best_gain <= 0:
            break
        selected.append(best)
        covered.update(voxel_sets[best])
        remaining.remove(best)
    return sorted(selected)


def reference_select(selector, frames, k: int) -> list[int]:
    """Same pipeline the straightforward way: numpy unprojection, per-frame np.unique rows into Python
    sets of tuples (as upstream's compute_voxel_sets), then the Python-sets greedy.
    """
    depth = np.stack([frame.depth_m(selector.stride) for frame in frames])
    poses = np.stack([frame.pose for frame in frames])
    world, valid = unproject_depth_batch(depth, frames[0].K, poses, selector.stride, selector.min_depth,
                                         selector.max_depth)
    points = [world[i].T[valid[i]] for i in range(len(frames))]
    everything = np.concatenate(points)
    origin = everything.min(axis=0)
    extent = everything.max(axis=0) - origin
    voxel_size = float(np.float32(extent.min()) / np.float32(20.0))
    sets = [set(map(tuple, np.unique(voxel_coords(p, origin, voxel_size), axis=0).tolist())) for p in points]
    return reference_sets_greedy(sets, k)


def timed(function, repeats: int, clock=time.perf_counter, best: bool = False):
    """Median time (ms) of ``clock`` over repeats (after one warm-up call) and the last result;
    with ``best`` also the fastest repeat (less disturbed by other processes on a shared machine).
    """
    result = function()
    times = []
    for _ in range(repeats):
        start = clock()
        result = function()
        times.append((clock() - start) * 1e3)
    if best:
        return statistics.median(times), min(times), result
    return statistics.median(times), result


def bench_selection(frames, stride: int, repeats: int) -> dict:
    selector = make_selector("space_aware", stride=stride)
    select_ms, select_best_ms, selection = timed(lambda: selector.select(frames, K), repeats, best=True)
    select_cpu_ms, _ = timed(lambda: selector.select(frames, K), repeats, time.process_time)
    uniform = uniform_indices(len(frames), K)
    sets, voxel_size = selector.voxel_sets(frames)
    greedy_ms, greedy = timed(lambda: greedy_max_coverage(sets, K), repeats)
    python_sets = [set(sets.frame(i).tolist()) for i in range(sets.num_frames)]
    reference_greedy_ms, reference_order = timed(lambda: reference_sets_greedy(python_sets, K),
                                                 max(3, repeats // 3))
    reference_ms, reference_indices = timed(lambda: reference_select(selector, frames, K),
                                            max(3, repeats // 5))
    fine = make_selector("space_aware", stride=4)
    fine_ms, fine_selection = timed(lambda: fine.select(frames, K), max(3, repeats // 3))
    return {
        "select_16_of_128_ms_median": round(select_ms, 3),
        "select_16_of_128_ms_min": round(select_best_ms, 3),
        "select_16_of_128_cpu_ms_median": round(select_cpu_ms, 3),
        "select_depth_stride_px": stride,
        "select_points_per_frame": (HEIGHT // stride) * (WIDTH // stride),
        "select_voxel_size_m": round(voxel_size, 4),
        "select_total_voxels": selection.total_voxels,
        "coverage_space_aware_16": round(selection.coverage, 4),
        "coverage_uniform_16": round(sets.coverage(uniform), 4),
        "coverage_gain_vs_uniform_ratio": round(selection.coverage / sets.coverage(uniform), 3),
        "select_16_of_128_stride4_ms_median": round(fine_ms, 3),
        "coverage_space_aware_16_stride4": round(fine_selection.coverage, 4),
        "greedy_only_ms_median": round(greedy_ms, 3),
        "reference_python_sets_greedy_only_ms_median": round(reference_greedy_ms, 3),
        "greedy_speedup_vs_python_sets_ratio": round(reference_greedy_ms / greedy_ms, 1),
        "reference_python_sets_select_ms_median": round(reference_ms, 3),
        "select_speedup_vs_python_sets_ratio": round(reference_ms / select_ms, 1),
        "same_selection_as_reference": int(sorted(greedy.order) == sorted(reference_order)
                                           and reference_indices == selection.indices),
    }


def bench_incremental(frames, stride: int, repeats: int) -> dict:
    selector = make_selector("space_aware_incremental", voxel_size=0.1, stride=stride)
    insert_times, insert_cpu_times = [], []
    for frame in frames:
        start, start_cpu = time.perf_counter(), time.process_time()
        selector.insert(frame)
        insert_times.append((time.perf_counter() - start) * 1e3)
        insert_cpu_times.append((time.process_time() - start_cpu) * 1e3)
    query_ms, selection = timed(lambda: selector.select(frames, K), repeats)
    query_cpu_ms, _ = timed(lambda: selector.select(frames, K), repeats, time.process_time)
    return {
        "incremental_insert_ms_per_frame_median": round(statistics.median(insert_times), 3),
        "incremental_insert_ms_per_frame_p95": round(float(np.percentile(insert_times, 95)), 3),
        "incremental_insert_cpu_ms_per_frame_mean": round(statistics.mean(insert_cpu_times), 3),
        "incremental_query_16_of_128_ms_median": round(query_ms, 3),
        "incremental_query_16_of_128_cpu_ms_median": round(query_cpu_ms, 3),
        "incremental_voxel_size_m": 0.1,
        "coverage_incremental_16": round(selection.coverage, 4),
    }


def bench_ingest(frames, count: int) -> dict:
    """640x480 rgb8 + 16UC1 messages as raw bytes, viewed zero-copy and buffered with a pose each."""
    messages = []
    for frame in frames[:8]:
        rgb_bytes = np.ascontiguousarray(frame.rgb).tobytes()
        depth_bytes = np.ascontiguousarray(frame.depth).tobytes()
        messages.append((rgb_bytes, depth_bytes, frame.pose))
    frame_bytes = WIDTH * HEIGHT * 3 + WIDTH * HEIGHT * 2
    bound = 200 * frame_bytes + frame_bytes // 2  # holds 200.5 frames' worth: the memory bound bites
    buffer = FrameBuffer(max_frames=300, max_bytes=bound)
    buffer.set_intrinsics("camera", frames[0].K)
    start = time.perf_counter()
    for i in range(count):
        rgb_bytes, depth_bytes, pose = messages[i % len(messages)]
        stamp = i / 30.0
        buffer.add_image("camera", stamp, rgb_view(rgb_bytes, HEIGHT, WIDTH, WIDTH * 3, "rgb8"))
        depth, scale = depth_view(depth_bytes, HEIGHT, WIDTH, WIDTH * 2, "16UC1")
        buffer.add_depth("camera", stamp + 0.001, depth, scale)
        buffer.add_pose(stamp, pose)
    ingest_s = time.perf_counter() - start
    query_ms, window = timed(lambda: buffer.frames("camera", start=(count - 128) / 30.0), 5)
    counters = buffer.counters
    return {
        "ingest_frames_per_s": round(count / ingest_s, 1),
        "ingest_us_per_frame": round(ingest_s / count * 1e6, 2),
        "buffer_bytes_held": buffer.nbytes,
        "buffer_bytes_bound": bound,
        "buffer_bytes_held_over_bound_ratio": round(buffer.nbytes / bound, 4),
        "buffer_frames_held": counters["held_image"],
        "buffer_evicted_memory": counters["evicted_image_memory"] + counters["evicted_depth_memory"],
        "buffer_query_128_frames_ms": round(query_ms, 3),
        "buffer_query_frames_with_depth_and_pose": sum(f.has_geometry for f in window),
    }


def run(args) -> dict:
    stride = getattr(args, "stride", 8)
    repeats = 5 if args.quick else getattr(args, "repeats", 15)
    ingest_frames = 600 if args.quick else getattr(args, "ingest_frames", 3000)
    frames = make_room_scan(num_frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, room=(6.0, 4.0, 3.0))
    figures = {"frames": NUM_FRAMES, "k": K, "image_size": f"{WIDTH}x{HEIGHT}"}
    figures.update(bench_selection(frames, stride, repeats))
    figures.update(bench_incremental(frames, stride, repeats))
    figures.update(bench_ingest(frames, ingest_frames))
    return figures
