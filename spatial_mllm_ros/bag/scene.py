# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Synthetic RGB-D scenes with exact ground truth: a furnished room, a camera walk, a bag, questions.

Judging a spatial model needs recordings whose answers are known exactly. A scene here is a box room
(``map`` frame, z up, floor corner at the origin) with axis-aligned furniture-like boxes of known
category, size, position and colour. The camera starts with its back to a target object, turns one
and a half times around while walking toward it, then keeps facing the target it approaches (so
per-frame "progress" is known for the reward annotator). Frames are rendered by vectorised numpy
ray casting (shaded RGB, metric z-depth, per-pixel object ids) and written as a real rosbag2
directory, with a VSI-Bench-format ``questions.json`` and a ``scene.json`` holding the scene
definition, per-frame visibility and camera-to-target distances.

Conventions: OpenCV camera axes (x right, y down, z forward); poses are camera-to-world; depth is
the z-depth along the optical axis; absolute distances are between the CLOSEST POINTS of the two
objects' bounding boxes (as VSI-Bench: "measuring from the closest point of each object"); object
size is the longest box dimension in centimetres; room size is the floor area in square metres;
relative directions use object centres on the floor plane; an object "appears" in the first frame
where it covers at least ``appearance_min_pixels`` pixels. Everything is deterministic from the seed.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import itertools
import json
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial_mllm_ros.core.atomic import write_json_atomic
from spatial_mllm_ros.core.frames import Frame

# Typical extents (x along the wall, y away from the wall, z height) in metres.
CATALOGUE: dict[str, tuple[float, float, float]] = {
    "bed": (2.0, 1.6, 0.55),
    "sofa": (2.0, 0.9, 0.85),
    "cabinet": (0.9, 0.45, 1.8),
    "refrigerator": (0.75, 0.7, 1.8),
    "bookshelf": (1.0, 0.35, 2.0),
    "desk": (1.4, 0.7, 0.75),
    "tv": (1.1, 0.12, 0.65),
    "table": (1.2, 0.8, 0.75),
    "lamp": (0.35, 0.35, 1.6),
    "plant": (0.45, 0.45, 1.0),
    "trash can": (0.3, 0.3, 0.45),
    "chair": (0.5, 0.5, 0.9),
}
WALL_CATEGORIES = ("bed", "sofa", "cabinet", "refrigerator", "bookshelf", "desk", "tv")
FREE_CATEGORIES = ("table", "lamp", "plant", "trash can")
COUNTED_CATEGORIES = ("chair", "plant")
TV_MOUNT_HEIGHT = 1.3  # centre height of the wall-mounted tv (m)
TARGET_CATEGORIES = ("refrigerator", "cabinet", "bookshelf", "sofa", "desk", "bed")

CAMERA_HEIGHT = 1.4
CAMERA_PITCH = -0.26  # rad, looking slightly down
HORIZONTAL_FOV_DEG = 75.0
TURN_FRACTION = 0.8  # during the first 80 % of the walk the camera turns ...
TURN_ANGLE = 3 * math.pi  # ... one and a half times, starting with its back to the target
START_STAMP_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z

ROOM_FACE_COLOURS = {  # (axis, side) -> RGB in 0..1: walls slightly different, floor, ceiling
    (0, 0): (0.78, 0.76, 0.70), (0, 1): (0.72, 0.74, 0.78), (1, 0): (0.80, 0.78, 0.74),
    (1, 1): (0.74, 0.78, 0.74), (2, 0): (0.55, 0.45, 0.35), (2, 1): (0.92, 0.92, 0.92),
}
_LIGHT = np.array([0.35, 0.55, 1.0]) / np.linalg.norm([0.35, 0.55, 1.0])


@dataclass(frozen=True)
class SceneObject:
    """One axis-aligned box object. ``object_id`` >= 1 (0 is the room in id images)."""

    object_id: int
    category: str
    name: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[int, int, int]

    @property
    def lower(self) -> np.ndarray:
        """Minimum corner (3,)."""
        return np.asarray(self.center) - np.asarray(self.size) / 2.0

    @property
    def upper(self) -> np.ndarray:
        """Maximum corner (3,)."""
        return np.asarray(self.center) + np.asarray(self.size) / 2.0


@dataclass
class Scene:
    """A room, its objects, the camera and its trajectory (images are rendered on demand)."""

    seed: int
    name: str
    room_size: tuple[float, float, float]
    objects: list[SceneObject]
    target_id: int
    width: int
    height: int
    intrinsics: np.ndarray  # (3, 3)
    stamps_ns: np.ndarray  # (N,) int64
    poses: np.ndarray  # (N, 4, 4) camera-to-world
    fps: float = 10.0
    appearance_min_pixels: int = 0
    walk: tuple[np.ndarray, np.ndarray] | None = None  # start and end (xy) of the camera's walk
    _visibility: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        """Number of frames of the trajectory."""
        return int(self.stamps_ns.size)

    @property
    def stamps(self) -> np.ndarray:
        """(N,) float64 seconds."""
        return self.stamps_ns / 1e9

    @property
    def target(self) -> SceneObject:
        """The object the camera walks up to."""
        return self.object_by_id(self.target_id)

    def object_by_id(self, object_id: int) -> SceneObject:
        """The object with this id (KeyError if none)."""
        for obj in self.objects:
            if obj.object_id == object_id:
                return obj
        raise KeyError(object_id)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index``: (rgb (H, W, 3) uint8, depth (H, W) float32 metres, ids (H, W) int16)."""
        return render_view(self, self.poses[index])

    def frames(self, camera_id: str = "camera") -> Iterator[Frame]:
        """The rendered frames as core Frames (float32 metre depth, intrinsics, poses)."""
        for index in range(self.num_frames):
            rgb, depth, _ = self.render(index)
            yield Frame(stamp=float(self.stamps[index]), camera_id=camera_id, rgb=rgb, depth=depth,
                        depth_scale=1.0, K=self.intrinsics.copy(), pose=self.poses[index].copy(),
                        frame_id="camera_color_optical_frame")

    def visibility(self) -> np.ndarray:
        """(N, M) pixel counts of each object (column j = ``objects[j]``) in each frame (renders once)."""
        if self._visibility is None:
            counts = np.zeros((self.num_frames, len(self.objects)), dtype=np.int64)
            for index in range(self.num_frames):
                counts[index] = self._counts(self.render(index)[2])
            self._visibility = counts
        return self._visibility

    def _counts(self, ids: np.ndarray) -> np.ndarray:
        max_id = max(obj.object_id for obj in self.objects)
        per_id = np.bincount(ids.reshape(-1).astype(np.int64), minlength=max_id + 1)
        return np.array([per_id[obj.object_id] for obj in self.objects])

    def first_appearance(self) -> dict[int, int]:
        """Object id -> first frame where it covers >= ``appearance_min_pixels`` (seen objects only)."""
        seen = self.visibility() >= self.appearance_min_pixels
        return {obj.object_id: int(np.argmax(seen[:, j]))
                for j, obj in enumerate(self.objects) if seen[:, j].any()}

    def pose_at(self, progress: float) -> np.ndarray:
        """(4, 4) camera-to-world pose at walk progress in [0, 1] (frame i is at i / (N - 1))."""
        if self.walk is None:
            raise ValueError("this scene has no walk to evaluate between frames")
        return _walk_pose(*self.walk, np.asarray(self.target.center), progress)

    def target_distances(self) -> np.ndarray:
        """(N,) distance from the camera centre to the closest point of the target's box (m)."""
        target = self.target
        return np.array([point_box_distance(pose[:3, 3], target.lower, target.upper) for pose in self.poses])


@dataclass(frozen=True)
class ScenePaths:
    """Where :func:`write_scene` put things."""

    root: Path
    bag: Path
    questions: Path
    scene_json: Path


# ---------------------------------------------------------------------------------------------
# geometry


def box_distance(a_lower, a_upper, b_lower, b_upper) -> float:
    """Distance between the closest points of two axis-aligned boxes (0 when they touch/overlap)."""
    gap = np.maximum(0.0, np.maximum(np.asarray(a_lower) - b_upper, np.asarray(b_lower) - a_upper))
    return float(np.linalg.norm(gap))


def point_box_distance(point, lower, upper) -> float:
    """Distance from a point to an axis-aligned box (0 inside)."""
    point = np.asarray(point, dtype=np.float64)
    return float(np.linalg.norm(point - np.clip(point, lower, upper)))


def object_distance(a: SceneObject, b: SceneObject) -> float:
    """VSI-Bench absolute distance: between the closest points of the two boxes (m)."""
    return box_distance(a.lower, a.upper, b.lower, b.upper)


def camera_pose(position, yaw: float, pitch: float) -> np.ndarray:
    """(4, 4) camera-to-world pose looking along heading ``yaw`` (about z), ``pitch`` up (rad)."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, down, forward
    pose[:3, 3] = position
    return pose


def intrinsics_for(width: int, height: int, horizontal_fov_deg: float = HORIZONTAL_FOV_DEG) -> np.ndarray:
    """Square-pixel pinhole K with the principal point at the image centre (OpenCV pixel centres)."""
    focal = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=8)
def _pixel_rays(k_entries: tuple[float, ...], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ray (x, y) components K^-1 [u, v, 1] through the pixel centres (z = 1), (H, W) each."""
    k = np.asarray(k_entries).reshape(3, 3)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _screen_rectangle(obj: SceneObject, pose: np.ndarray, intrinsics: np.ndarray, height: int,
                      width: int) -> tuple[slice, slice] | None:
    """Pixel rows/columns that can see the box (None when it is entirely behind the camera)."""
    corners = np.array(list(itertools.product(*zip(obj.lower, obj.upper, strict=True))))  # (8, 3)
    camera = (corners - pose[:3, 3]) @ pose[:3, :3]  # world -> camera
    if np.all(camera[:, 2] <= 1e-6):
        return None
    if np.any(camera[:, 2] <= 1e-6):  # straddles the camera plane: no finite projection
        return slice(0, height), slice(0, width)
    u = intrinsics[0, 0] * camera[:, 0] / camera[:, 2] + intrinsics[0, 2]
    v = intrinsics[1, 1] * camera[:, 1] / camera[:, 2] + intrinsics[1, 2]
    columns = slice(max(0, math.floor(u.min())), min(width, math.ceil(u.max()) + 1))
    rows = slice(max(0, math.floor(v.min())), min(height, math.ceil(v.max()) + 1))
    if columns.start >= columns.stop or rows.start >= rows.stop:
        return None
    return rows, columns


def _nearest_of_three(values: list[np.ndarray], pick_largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise min (or max) of three arrays and the index (0-2) of the one that gave it."""
    best, index = values[0], np.zeros(values[0].shape, dtype=np.int8)
    for i in (1, 2):
        better = values[i] > best if pick_largest else values[i] < best
        best = np.where(better, values[i], best)
        index = np.where(better, np.int8(i), index)
    return best, index


def render_view(scene: Scene, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast one view: (rgb (H, W, 3) uint8, z-depth (H, W) float32 m, object ids (H, W) int16).

    Each pixel's ray is K^-1 [u, v, 1] (z = 1 in the camera), so the hit parameter t is the z-depth.
    The closest hit among the boxes (slab test, only over the pixels a box projects to) and the
    room's inner faces wins; faces are shaded with a Lambert term plus a head-light term; the floor
    has a 0.5 m checker pattern.
    """
    height, width = scene.height, scene.width
    rotation, origin = pose[:3, :3], pose[:3, 3]
    ray_x, ray_y = _pixel_rays(tuple(np.asarray(scene.intrinsics, dtype=np.float64).ravel()), height, width)
    # world direction components, (H, W) each: R @ [x, y, 1]
    directions = [rotation[i, 0] * ray_x + rotation[i, 1] * ray_y + rotation[i, 2] for i in range(3)]
    room_size = np.asarray(scene.room_size, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = [1.0 / d for d in directions]
        exits = [np.maximum(-origin[i] * inverse[i], (room_size[i] - origin[i]) * inverse[i])
                 for i in range(3)]
        depth, axis = _nearest_of_three(exits, pick_largest=False)  # leave the room
        ids = np.zeros((height, width), dtype=np.int16)
        for obj in scene.objects:
            window = _screen_rectangle(obj, pose, scene.intrinsics, height, width)
            if window is None:
                continue
            lower, upper = obj.lower, obj.upper
            t_lo = [(lower[i] - origin[i]) * inverse[i][window] for i in range(3)]
            t_hi = [(upper[i] - origin[i]) * inverse[i][window] for i in range(3)]
            entry, entry_axis = _nearest_of_three([np.minimum(a, b) for a, b in zip(t_lo, t_hi, strict=True)],
                                                  pick_largest=True)
            leave = np.minimum(np.minimum(*(np.maximum(t_lo[i], t_hi[i]) for i in (0, 1))),
                               np.maximum(t_lo[2], t_hi[2]))
            closer = (entry <= leave) & (entry > 0) & (entry < depth[window])
            depth[window] = np.where(closer, entry, depth[window])
            axis[window] = np.where(closer, entry_axis, axis[window])
            ids[window] = np.where(closer, np.int16(obj.object_id), ids[window])
    component = np.choose(axis, directions)  # ray direction along the hit face's normal axis
    towards = -np.sign(component)  # the hit face's normal points back toward the camera
    length = np.sqrt(directions[0] ** 2 + directions[1] ** 2 + directions[2] ** 2)
    shade = 0.35 + 0.4 * np.clip(towards * _LIGHT[axis], 0.0, None) + 0.25 * np.abs(component) / length
    # palette: 6 room faces (axis * 2 + far side), then the objects in order
    palette = np.array([ROOM_FACE_COLOURS[(a, side)] for a in range(3) for side in (0, 1)]
                       + [np.asarray(obj.color) / 255.0 for obj in scene.objects])
    room = ids == 0
    index = np.where(room, axis * 2 + (component > 0), 0)
    if scene.objects:
        slot = np.zeros(max(obj.object_id for obj in scene.objects) + 1, dtype=np.int64)
        for j, obj in enumerate(scene.objects):
            slot[obj.object_id] = 6 + j
        index = np.where(room, index, slot[ids])
    floor = index == 4
    floor_x = origin[0] + directions[0][floor] * depth[floor]
    floor_y = origin[1] + directions[1][floor] * depth[floor]
    shade[floor] *= np.where((np.floor(floor_x / 0.5) + np.floor(floor_y / 0.5)) % 2 == 0, 0.8, 1.0)
    rgb = np.clip(palette[index] * shade[..., None] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, depth.astype(np.float32), ids


# ---------------------------------------------------------------------------------------------
# scene construction


def _distinct_colours(count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    offset = float(rng.random())
    colours = []
    for i in range(count):
        hue = (offset + i * 0.618033988749895) % 1.0
        saturation = 0.55 + 0.3 * ((i * 7) % 3) / 2.0
        value = 0.7 + 0.25 * ((i * 5) % 4) / 3.0
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        colours.append((round(red * 255), round(green * 255), round(blue * 255)))
    return colours


def _footprints_clear(lower, upper, placed: list[tuple[np.ndarray, np.ndarray]], gap: float) -> bool:
    return all(
        np.any(lower[:2] >= other_hi[:2] + gap) or np.any(upper[:2] <= other_lo[:2] - gap)
        for other_lo, other_hi in placed
    )


def _place_layout(rng: np.random.Generator,
                  room: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]] | None:
    """(category, centre, size) of every object, or None when random placement failed."""
    wall_count = int(rng.integers(4, 6))
    wall_categories = list(rng.choice(WALL_CATEGORIES, size=wall_count, replace=False))
    free_categories = [c for c in FREE_CATEGORIES if c != "plant" and rng.random() < 0.75]
    chairs = int(rng.integers(2, 5))
    plants = int(rng.integers(1, 4))
    wanted = [(c, True) for c in wall_categories] + [(c, False) for c in free_categories]
    wanted += [("chair", False)] * chairs + [("plant", False)] * plants
    placed: list[tuple[str, np.ndarray, np.ndarray]] = []
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    for category, on_wall in wanted:
        extent = np.asarray(CATALOGUE[category], dtype=np.float64)
        for _attempt in range(60):
            jitter = 1.0 + 0.08 * (rng.random(3) - 0.5)
            size = extent * jitter
            if on_wall:
                wall = int(rng.integers(0, 4))
                along, away = (0, 1) if wall in (0, 1) else (1, 0)
                size = size[[0, 1, 2]] if along == 0 else size[[1, 0, 2]]
                center = np.zeros(3)
                span = room[along] - size[along] - 0.4
                if span <= 0:
                    continue
                center[along] = 0.2 + size[along] / 2 + rng.random() * span
                near_wall = wall in (0, 2)
                center[away] = 0.03 + size[away] / 2 if near_wall else room[away] - 0.03 - size[away] / 2
                center[2] = TV_MOUNT_HEIGHT if category == "tv" else size[2] / 2
            else:
                if rng.random() < 0.5:
                    size = size[[1, 0, 2]]
                center = np.array([
                    0.5 + size[0] / 2 + rng.random() * (room[0] - 1.0 - size[0]),
                    0.5 + size[1] / 2 + rng.random() * (room[1] - 1.0 - size[1]),
                    size[2] / 2,
                ])
            lower, upper = center - size / 2, center + size / 2
            if _footprints_clear(lower, upper, boxes, 0.25):
                placed.append((category, center, size))
                boxes.append((lower, upper))
                break
        else:
            return None
    return placed


def _walk(rng: np.random.Generator, room: np.ndarray, target_lower, target_upper,
          boxes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """Start and end (xy) of a straight walk toward the target's open face, or None if blocked."""
    centre = (target_lower + target_upper) / 2
    # the target's face that looks into the room: the axis/side with the most space in front
    best = None
    for axis, side in itertools.product((0, 1), (0, 1)):
        face = target_upper[axis] if side else target_lower[axis]
        space = room[axis] - face if side else face
        if best is None or space > best[0]:
            best = (space, axis, side, face)
    space, axis, side, face = best
    if space < 2.5:
        return None
    normal = np.zeros(2)
    normal[axis] = 1.0 if side else -1.0
    end = centre[:2].copy()
    end[axis] = face + normal[axis] * 1.0
    walk_length = min(space - 1.0 - 0.6, 3.5)
    if walk_length < 1.2:
        return None
    start = end + normal * walk_length
    start[1 - axis] += (rng.random() - 0.5) * 0.6
    start = np.clip(start, 0.6, room[:2] - 0.6)
    for t in np.linspace(0.0, 1.0, 40):
        point = start + (end - start) * t
        if any(np.all(point >= lo[:2] - 0.45) and np.all(point <= hi[:2] + 0.45) for lo, hi in boxes):
            return None
    return start, end


def make_scene(
    seed: int = 0, width: int = 320, height: int = 240, num_frames: int = 150, fps: float = 10.0
) -> Scene:
    """Build the scene for a seed: room, objects, target, camera path (nothing rendered yet)."""
    if width < 16 or height < 16:
        raise ValueError(f"image size must be at least 16x16, got {width}x{height}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rng = np.random.default_rng(seed)
    for _attempt in range(500):
        room = np.array([rng.uniform(5.0, 7.0), rng.uniform(5.0, 7.0), rng.uniform(2.6, 3.0)])
        layout = _place_layout(rng, room)
        if layout is None:
            continue
        boxes = [(c - s / 2, c + s / 2) for _, c, s in layout]
        candidates = [i for i, (category, _, _) in enumerate(layout) if category in TARGET_CATEGORIES]
        rng.shuffle(candidates)
        for target_index in candidates:
            others = [b for i, b in enumerate(boxes) if i != target_index]
            walk = _walk(rng, room, *boxes[target_index], others)
            if walk is not None:
                return _assemble(seed, room, layout, target_index, walk, width, height, num_frames, fps, rng)
    raise RuntimeError(f"could not lay out a scene for seed {seed}")  # pragma: no cover


def _assemble(seed, room, layout, target_index, walk, width, height, num_frames, fps, rng) -> Scene:
    colours = _distinct_colours(len(layout), rng)
    per_category: dict[str, int] = {}
    objects = []
    for index, (category, centre, size) in enumerate(layout):
        per_category[category] = per_category.get(category, 0) + 1
        objects.append(SceneObject(
            object_id=index + 1, category=category,
            name=f"{category.replace(' ', '_')}_{per_category[category]}",
            center=tuple(round(float(x), 4) for x in centre), size=tuple(round(float(x), 4) for x in size),
            color=colours[index],
        ))
    target = objects[target_index]
    start, end = walk
    target_centre = np.asarray(target.center)
    poses = np.stack([_walk_pose(start, end, target_centre, t) for t in np.linspace(0.0, 1.0, num_frames)])
    stamps = START_STAMP_NS + np.round(np.arange(num_frames) * 1e9 / fps).astype(np.int64)
    return Scene(
        seed=seed, name=f"synthetic_room_seed{seed}", room_size=tuple(round(float(x), 4) for x in room),
        objects=objects, target_id=target.object_id, width=width, height=height,
        intrinsics=intrinsics_for(width, height), stamps_ns=stamps, poses=poses, fps=fps,
        appearance_min_pixels=max(20, int(0.005 * width * height)), walk=(start, end),
    )


def _walk_pose(start, end, target_centre, t: float) -> np.ndarray:
    """Camera pose at walk progress t: along the line, turning 1.5 times, then facing the target."""
    xy = start + (end - start) * t
    position = np.array([xy[0], xy[1], CAMERA_HEIGHT + 0.02 * math.sin(2 * math.pi * 3 * t)])
    facing = math.atan2(target_centre[1] - xy[1], target_centre[0] - xy[0])
    yaw = facing + TURN_ANGLE * max(0.0, 1.0 - t / TURN_FRACTION)
    return camera_pose(position, yaw, CAMERA_PITCH)


# ---------------------------------------------------------------------------------------------
# questions

_LETTERS = "ABCD"


def _signed_angle_deg(heading: np.ndarray, vector: np.ndarray) -> float:
    """Angle from ``heading`` to ``vector`` on the floor plane, degrees, positive = to the left."""
    cross = heading[0] * vector[1] - heading[1] * vector[0]
    return math.degrees(math.atan2(cross, float(np.dot(heading, vector))))


def _row(rows: list[dict], scene: Scene, task: str, question: str, options, truth, objects) -> None:
    rows.append({
        "id": len(rows),
        "dataset": "synthetic",
        "scene_name": scene.name,
        "question_type": task,
        "question": question,
        "options": options,
        "ground_truth": truth,
        "objects": [obj.name for obj in objects],
    })


def _lettered(texts: list[str]) -> list[str]:
    return [f"{_LETTERS[i]}. {text}" for i, text in enumerate(texts)]


def make_questions(scene: Scene, max_per_task: int = 3) -> list[dict]:
    """VSI-Bench rows with exact ground truth for the objects the camera actually saw."""
    rng = np.random.default_rng(scene.seed + 7919)
    first = scene.first_appearance()
    seen = [obj for obj in scene.objects if obj.object_id in first]
    by_category: dict[str, list[SceneObject]] = {}
    for obj in scene.objects:
        by_category.setdefault(obj.category, []).append(obj)
    # named by category alone, so only categories with one instance (all of them seen)
    unique = [objs[0] for objs in by_category.values() if len(objs) == 1 and objs[0].object_id in first]
    rows: list[dict] = []

    for category, objs in by_category.items():
        if len(objs) >= 2 and all(o.object_id in first for o in objs):
            _row(rows, scene, "object_counting", f"How many {category}(s) are in this room?", None,
                 str(len(objs)), objs)

    pairs = list(itertools.combinations(unique, 2))
    for index in rng.permutation(len(pairs))[:max_per_task]:
        a, b = pairs[index]
        _row(rows, scene, "object_abs_distance",
             "Measuring from the closest point of each object, what is the direct distance between the "
             f"{a.category} and the {b.category} (in meters)?", None, f"{object_distance(a, b):.2f}", [a, b])

    for index in rng.permutation(len(unique))[:max_per_task]:
        obj = unique[index]
        _row(rows, scene, "object_size_estimation",
             "What is the length of the longest dimension (length, width, or height) of the "
             f"{obj.category}, measured in centimeters?", None, str(round(max(obj.size) * 100)), [obj])

    area = scene.room_size[0] * scene.room_size[1]
    _row(rows, scene, "room_size_estimation",
         "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size "
         "of the combined space.", None, f"{area:.1f}", [])

    _relative_distance(rows, scene, unique, rng, max_per_task)
    _relative_direction(rows, scene, unique, rng, max_per_task)
    _appearance_order(rows, scene, seen, first, rng, max_per_task)
    _route_planning(rows, scene, unique, rng, max_per_task)
    return rows


def _relative_distance(rows, scene, unique, rng, limit) -> None:
    made = 0
    for index in rng.permutation(len(unique)):
        if made >= limit or len(unique) < 5:
            break
        target = unique[index]
        others = [o for o in unique if o is not target]
        choices = [others[i] for i in rng.permutation(len(others))[:4]]
        distances = [object_distance(target, o) for o in choices]
        order = np.argsort(distances)
        if distances[order[1]] - distances[order[0]] < 0.15:
            continue  # not clearly decidable
        names = ", ".join(o.category for o in choices)
        _row(rows, scene, "object_rel_distance",
             f"Measuring from the closest point of each object, which of these objects ({names}) is the "
             f"closest to the {target.category}?", _lettered([o.category for o in choices]),
             _LETTERS[int(order[0])], [target, *choices])
        made += 1


def _direction_label(level: str, angle: float) -> str | None:
    """Answer for an angle (deg, + = left) at a difficulty level, None when too close to a boundary."""
    size = abs(angle)
    side = "left" if angle > 0 else "right"
    if level == "easy":
        return side if 15 <= size <= 165 else None
    if level == "medium":
        if 15 <= size <= 125:
            return side
        return "back" if size >= 145 else None
    if min(size, abs(size - 90), 180 - size) < 10:
        return None
    return ("front-" if size < 90 else "back-") + side


_DIRECTION_QUESTIONS = {
    "easy": ("is the {q} to the left or the right of the {o}?", ["left", "right"]),
    "medium": ("is the {q} to my left, right, or back? An object is to my back if I would have to turn at "
               "least 135 degrees in order to face it.", ["left", "right", "back"]),
    "hard": ("is the {q} to my front-left, front-right, back-left, or back-right? The directions refer to "
             "the quadrants of a Cartesian plane (if I am standing at the origin and facing along the "
             "positive y-axis).", ["front-left", "front-right", "back-left", "back-right"]),
}


def _relative_direction(rows, scene, unique, rng, limit) -> None:
    triples = list(itertools.permutations(unique, 3))
    order = rng.permutation(len(triples))
    for level, (template, labels) in _DIRECTION_QUESTIONS.items():
        made = 0
        for index in order:
            if made >= limit:
                break
            standing, facing, query = triples[index]
            heading = np.asarray(facing.center[:2]) - standing.center[:2]
            offset = np.asarray(query.center[:2]) - standing.center[:2]
            if np.linalg.norm(heading) < 0.8 or np.linalg.norm(offset) < 0.8:
                continue
            label = _direction_label(level, _signed_angle_deg(heading, offset))
            if label is None:
                continue
            texts = labels if level == "easy" else [labels[i] for i in rng.permutation(len(labels))]
            _row(rows, scene, f"object_rel_direction_{level}",
                 f"If I am standing by the {standing.category} and facing the {facing.category}, "
                 + template.format(q=query.category, o=facing.category),
                 _lettered(texts), _LETTERS[texts.index(label)], [standing, facing, query])
            made += 1


def _appearance_order(rows, scene, seen, first, rng, limit) -> None:
    first_by_category: dict[str, int] = {}
    for obj in seen:
        frame = first[obj.object_id]
        first_by_category[obj.category] = min(frame, first_by_category.get(obj.category, frame))
    categories = sorted(first_by_category)
    made = 0
    for _attempt in range(50):
        if made >= limit or len(categories) < 4:
            break
        chosen = [categories[i] for i in rng.choice(len(categories), size=4, replace=False)]
        frames = [first_by_category[c] for c in chosen]
        if len(set(frames)) < 4:
            continue  # two appear in the same frame: no single right order
        truth = [c for _, c in sorted(zip(frames, chosen, strict=True))]
        wrong: list[list[str]] = []
        while len(wrong) < 3:
            candidate = [truth[i] for i in rng.permutation(4)]
            if candidate != truth and candidate not in wrong:
                wrong.append(candidate)
        options = [truth, *wrong]
        options = [options[i] for i in rng.permutation(4)]
        texts = [", ".join(o) for o in options]
        objects = [o for o in seen if o.category in chosen]
        _row(rows, scene, "obj_appearance_order",
             "What will be the first-time appearance order of the following categories in the video: "
             f"{', '.join(chosen)}?", _lettered(texts), _LETTERS[options.index(truth)], objects)
        made += 1


def _turn(angle: float) -> str | None:
    size = abs(angle)
    if 35 <= size <= 145:
        return "Turn Left" if angle > 0 else "Turn Right"
    return "Turn Back" if size >= 160 else None


def _route_planning(rows, scene, unique, rng, limit) -> None:
    quads = list(itertools.permutations(unique, 4))
    made = 0
    for index in rng.permutation(len(quads))[:2000]:
        if made >= limit:
            break
        start, facing, waypoint, goal = (np.asarray(o.center[:2]) for o in quads[index])
        legs = [facing - start, waypoint - start, goal - waypoint]
        if min(np.linalg.norm(leg) for leg in legs) < 1.0:
            continue
        turns = [_turn(_signed_angle_deg(legs[0], legs[1])), _turn(_signed_angle_deg(legs[1], legs[2]))]
        if None in turns:
            continue
        names = [o.category for o in quads[index]]
        combos = [list(c) for c in itertools.product(("Turn Left", "Turn Right", "Turn Back"), repeat=2)]
        wrong = [c for c in combos if c != turns]
        options = [turns, *(wrong[i] for i in rng.permutation(len(wrong))[:3])]
        options = [options[i] for i in rng.permutation(4)]
        _row(rows, scene, "route_planning",
             f"You are a robot beginning at the {names[0]} facing the {names[1]}. You want to navigate to "
             f"the {names[3]}. You will perform the following actions (Note: for each [please fill in], "
             "choose either 'turn back,' 'turn left,' or 'turn right.'): 1. [please fill in] 2. Go forward "
             f"until the {names[2]} 3. [please fill in] 4. Go forward until the {names[3]}. You have reached "
             "the final destination.", _lettered([", ".join(o) for o in options]),
             _LETTERS[options.index(turns)], list(quads[index]))
        made += 1


# ---------------------------------------------------------------------------------------------
# files


def scene_description(scene: Scene) -> dict:
    """The JSON-ready scene definition, per-frame visibility and camera-to-target distances."""
    visibility = scene.visibility()
    first = scene.first_appearance()
    distances = scene.target_distances()
    span = distances[0] - distances[-1]
    frames = []
    for index in range(scene.num_frames):
        frames.append({
            "index": index,
            "stamp": float(scene.stamps[index]),
            "stamp_ns": int(scene.stamps_ns[index]),
            "pose": scene.poses[index].round(9).tolist(),
            "visible_pixels": {obj.name: int(visibility[index, j]) for j, obj in enumerate(scene.objects)
                               if visibility[index, j] > 0},
            "target_distance_m": round(float(distances[index]), 6),
            "target_progress": round(float((distances[0] - distances[index]) / span), 6) if span > 0 else 0.0,
        })
    return {
        "format": "spatial_mllm_ros synthetic scene v1",
        "seed": scene.seed,
        "name": scene.name,
        "frame_id": "map",
        "conventions": {
            "world": "map frame, z up, the room spans [0, size] on each axis",
            "camera": "OpenCV optical axes (x right, y down, z forward); poses are camera-to-world",
            "depth": "z-depth in metres",
            "abs_distance": "closest points of the two axis-aligned bounding boxes",
            "object_size": "longest box dimension in centimetres",
            "room_size": "floor area in square metres",
            "relative_direction": "object centres on the floor plane",
            "appearance": f"first frame with >= {scene.appearance_min_pixels} visible pixels",
        },
        "width": scene.width,
        "height": scene.height,
        "fps": scene.fps,
        "intrinsics": scene.intrinsics.tolist(),
        "room_size": list(scene.room_size),
        "appearance_min_pixels": scene.appearance_min_pixels,
        "target": {"id": scene.target_id, "name": scene.target.name, "category": scene.target.category},
        "objects": [
            {"id": obj.object_id, "name": obj.name, "category": obj.category, "center": list(obj.center),
             "size": list(obj.size), "color": list(obj.color), "first_frame": first.get(obj.object_id),
             "max_visible_pixels": int(visibility[:, j].max())}
            for j, obj in enumerate(scene.objects)
        ],
        "frames": frames,
    }


# How the scene is recorded. "tf": as a RealSense robot records it (realsense2_camera 4.x topic names,
# depth aligned to colour, poses only through /tf and /tf_static); "pose_topic": one PoseStamped topic
# with the camera pose (the project's original layout).
POSE_SOURCES = ("tf", "pose_topic")
ROBOT_TOPICS = {
    "image": "/camera/camera/color/image_raw",
    "camera_info": "/camera/camera/color/camera_info",
    "depth": "/camera/camera/aligned_depth_to_color/image_raw",
    "depth_camera_info": "/camera/camera/aligned_depth_to_color/camera_info",
    "tf": "/tf",
    "tf_static": "/tf_static",
}
POSE_TOPIC_LAYOUT = {"image": "/camera/color/image_raw", "depth": "/camera/depth/image_raw",
                     "camera_info": "/camera/color/camera_info", "pose": "/camera/pose"}
OPTICAL_FRAME = "camera_color_optical_frame"
TF_RATE_FACTOR = 3  # odom -> base_link at three times the camera rate
MAP_TO_ODOM_PERIOD_S = 0.2  # a localiser's map -> odom correction at 5 Hz
# receive-time delays after the header stamp (ms): tf arrives after the images it applies to
_DELAY_MS = {"colour": 8, "depth": 12, "odom": 30, "map": 45}


def _translation_yaw(x: float, y: float, z: float, yaw: float = 0.0) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0, 0, 1]]
    transform[:3, 3] = (x, y, z)
    return transform


def robot_static_transforms() -> list[tuple[str, str, np.ndarray]]:
    """The mount: base_link -> camera_link (pitched down) -> camera_color_frame -> optical frame."""
    pitch_down = -CAMERA_PITCH  # rotation about +y tips the x axis downwards
    mount = np.eye(4)
    mount[:3, :3] = [[math.cos(pitch_down), 0.0, math.sin(pitch_down)], [0.0, 1.0, 0.0],
                     [-math.sin(pitch_down), 0.0, math.cos(pitch_down)]]
    mount[:3, 3] = (0.10, 0.0, CAMERA_HEIGHT)
    colour = _translation_yaw(0.0, 0.015, 0.0)
    optical = np.eye(4)
    optical[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # x right, y down, z forward
    return [("base_link", "camera_link", mount), ("camera_link", "camera_color_frame", colour),
            ("camera_color_frame", OPTICAL_FRAME, optical)]


MAP_FROM_ODOM = _translation_yaw(0.4, -0.25, 0.0, 0.15)


def _base_from_optical() -> np.ndarray:
    chain = np.eye(4)
    for _, _, transform in robot_static_transforms():
        chain = chain @ transform
    return chain


def _robot_events(scene: Scene) -> list[tuple[int, int, str, object]]:
    """(log time ns, order, kind, payload) of everything a robot would record, in receive order."""
    stamps = [int(s) for s in scene.stamps_ns]
    ms = 1_000_000
    optical_from_base = np.linalg.inv(_base_from_optical())
    odom_from_map = np.linalg.inv(MAP_FROM_ODOM)
    events: list[tuple[int, int, str, object]] = []
    statics = robot_static_transforms()
    static_stamp = stamps[0] - 1_000_000_000
    events.append((stamps[0], 0, "tf_static", (static_stamp, statics[:1])))  # robot_state_publisher
    events.append((stamps[0], 1, "tf_static", (static_stamp, statics[1:])))  # the camera driver
    last = len(stamps) - 1
    for i, stamp in enumerate(stamps):
        events.append((stamp + _DELAY_MS["colour"] * ms, 2, "colour", i))
        events.append((stamp + _DELAY_MS["depth"] * ms, 3, "depth", i))
        for k in range(TF_RATE_FACTOR if i < last else 1):
            tf_stamp = stamp + k * (stamps[i + 1] - stamp) // TF_RATE_FACTOR if k else stamp
            camera = scene.poses[i] if k == 0 else scene.pose_at((i + k / TF_RATE_FACTOR) / last)
            odom_from_base = odom_from_map @ camera @ optical_from_base
            events.append((tf_stamp + _DELAY_MS["odom"] * ms, 4, "tf", (tf_stamp, "odom", "base_link",
                                                                         odom_from_base)))
    map_stamp = stamps[0]
    while True:
        events.append((map_stamp + _DELAY_MS["map"] * ms, 5, "tf", (map_stamp, "map", "odom", MAP_FROM_ODOM)))
        if map_stamp >= stamps[-1]:
            break
        map_stamp += round(MAP_TO_ODOM_PERIOD_S * 1e9)
    events.sort(key=lambda event: event[:2])
    return events


def write_scene(
    out_dir: str | Path,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    num_frames: int = 150,
    fps: float = 10.0,
    storage: str = "sqlite3",
    depth_encoding: str | None = None,
    overwrite: bool = False,
    *,
    pose_source: str = "tf",
    max_bag_duration_s: float | None = None,
) -> ScenePaths:
    """Render a scene and write ``OUT/bag`` (rosbag2), ``OUT/questions.json`` and ``OUT/scene.json``.

    ``pose_source="tf"`` (default) records like a RealSense robot: ``/camera/camera/color/image_raw``
    (rgb8) with its ``camera_info``, ``/camera/camera/aligned_depth_to_color/image_raw`` (16UC1 mm by
    default) with its ``camera_info``, ``/tf`` (map -> odom at 5 Hz, odom -> base_link at three times
    the camera rate) and ``/tf_static`` (base_link -> camera_link -> camera_color_frame ->
    camera_color_optical_frame, transient local), each received a few ms after its stamp.
    ``pose_source="pose_topic"`` writes the original layout: ``/camera/color/image_raw``,
    ``/camera/depth/image_raw`` (32FC1 m by default), ``/camera/color/camera_info`` and
    ``/camera/pose`` (PoseStamped in "map"), all at the image stamps. ``max_bag_duration_s`` splits the
    recording into several files. An existing bag is an error unless ``overwrite``.
    """
    from spatial_mllm_ros.bag.writer import CameraBagWriter

    if pose_source not in POSE_SOURCES:
        raise ValueError(f"pose_source must be one of {', '.join(POSE_SOURCES)}, got {pose_source!r}")
    robot = pose_source == "tf"
    depth_encoding = depth_encoding or ("16UC1" if robot else "32FC1")
    root = Path(out_dir)
    paths = ScenePaths(root=root, bag=root / "bag", questions=root / "questions.json",
                       scene_json=root / "scene.json")
    if paths.bag.exists():
        if not overwrite:
            raise ValueError(f"{paths.bag} already exists (pass overwrite=True / --overwrite to replace it)")
        shutil.rmtree(paths.bag)
    root.mkdir(parents=True, exist_ok=True)
    scene = make_scene(seed=seed, width=width, height=height, num_frames=num_frames, fps=fps)
    partial = root / ".bag.partial"
    if partial.exists():
        shutil.rmtree(partial)
    counts = np.zeros((scene.num_frames, len(scene.objects)), dtype=np.int64)
    layout = ROBOT_TOPICS if robot else POSE_TOPIC_LAYOUT
    topics = {"image_topic": layout["image"], "depth_topic": layout["depth"],
              "info_topic": layout["camera_info"], "pose_topic": layout.get("pose"),
              "depth_info_topic": layout.get("depth_camera_info")}
    with CameraBagWriter(partial, storage=storage, depth_encoding=depth_encoding, optical_frame=OPTICAL_FRAME,
                         max_bag_duration_s=max_bag_duration_s, **topics) as writer:
        if robot:
            _write_robot_recording(writer, scene, counts)
        else:
            for index in range(scene.num_frames):
                rgb, depth, ids = scene.render(index)
                counts[index] = scene._counts(ids)
                writer.write_frame(int(scene.stamps_ns[index]), rgb, depth, scene.intrinsics,
                                   scene.poses[index])
    scene._visibility = counts
    _rename_bag(partial, paths.bag)
    write_json_atomic(paths.questions, make_questions(scene), indent=1)
    description = scene_description(scene)
    description["bag"] = {"path": "bag", "storage": storage, "depth_encoding": depth_encoding,
                          "pose_source": pose_source, "topics": dict(layout),
                          "files": sorted(p.name for p in paths.bag.iterdir()
                                          if p.suffix in (".db3", ".mcap"))}
    if robot:
        description["bag"]["tf"] = {
            "fixed_frame": "map", "optical_frame": OPTICAL_FRAME, "map_from_odom": MAP_FROM_ODOM.tolist(),
            "static": [{"parent": p, "child": c, "transform": t.tolist()}
                       for p, c, t in robot_static_transforms()],
            "odom_to_base_link_hz": scene.fps * TF_RATE_FACTOR, "map_to_odom_hz": 1.0 / MAP_TO_ODOM_PERIOD_S}
    write_json_atomic(paths.scene_json, description, indent=1)
    return paths


def _write_robot_recording(writer, scene: Scene, counts: np.ndarray) -> None:
    rendered: dict[int, tuple] = {}
    for log_ns, _, kind, payload in _robot_events(scene):
        if kind == "tf_static":
            stamp, transforms = payload
            writer.write_transforms(stamp, transforms, static=True, log_time=log_ns)
        elif kind == "tf":
            stamp, parent, child, transform = payload
            writer.write_transforms(stamp, [(parent, child, transform)], log_time=log_ns)
        else:
            index = payload
            stamp = int(scene.stamps_ns[index])
            if index not in rendered:
                rendered[index] = scene.render(index)
            rgb, depth, ids = rendered[index]
            if kind == "colour":
                counts[index] = scene._counts(ids)
                writer.write_rgb(stamp, rgb, log_time=log_ns)
                writer.write_camera_info(stamp, scene.intrinsics, scene.width, scene.height, log_time=log_ns)
            else:
                writer.write_depth(stamp, depth, log_time=log_ns)
                del rendered[index]


def _rename_bag(partial: Path, final: Path) -> None:
    """Move a finished bag directory into place, renaming its storage file to match (rosbag2 naming)."""
    partial.rename(final)
    for storage_file in final.iterdir():
        if storage_file.name.startswith(partial.name) and storage_file.suffix in (".db3", ".mcap"):
            renamed = storage_file.with_name(final.name + storage_file.name[len(partial.name):])
            storage_file.rename(renamed)
            metadata = final / "metadata.yaml"
            metadata.write_text(metadata.read_text().replace(storage_file.name, renamed.name))


def main(argv: list[str] | None = None) -> int:
    """``spatial-mllm-ros make-scene OUT_DIR [--seed] [--frames] [--width --height] [--storage]``."""
    parser = argparse.ArgumentParser(prog="spatial-mllm-ros make-scene", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="output folder (gets bag/, questions.json, scene.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=150, help="number of frames (default 150)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--size", help="WIDTHxHEIGHT, e.g. 640x480 (overrides --width/--height)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    parser.add_argument("--depth-encoding", choices=("32FC1", "16UC1"),
                        help="default: 16UC1 (RealSense) with --pose-source tf, 32FC1 with pose_topic")
    parser.add_argument("--pose-source", choices=POSE_SOURCES, default="tf",
                        help="tf (default): RealSense topic names, poses via /tf and /tf_static; pose_topic: "
                             "the original layout with a /camera/pose PoseStamped topic")
    parser.add_argument("--max-bag-duration", type=float, metavar="SECONDS",
                        help="split the recording into files of this many seconds (as ros2 bag record does)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    args = parser.parse_args(argv)
    width, height = args.width, args.height
    if args.size:
        try:
            width, height = (int(x) for x in args.size.lower().split("x"))
        except ValueError:
            parser.error(f"--size must look like 640x480, got {args.size!r}")
    try:
        paths = write_scene(args.out_dir, seed=args.seed, width=width, height=height, num_frames=args.frames,
                            fps=args.fps, storage=args.storage, depth_encoding=args.depth_encoding,
                            overwrite=args.overwrite, pose_source=args.pose_source,
                            max_bag_duration_s=args.max_bag_duration)
    except ValueError as error:
        print(f"make-scene: {error}", file=sys.stderr)
        return 2
    questions = json.loads(paths.questions.read_text())
    files = json.loads(paths.scene_json.read_text())["bag"]["files"]
    print(f"wrote {paths.bag} ({args.frames} frames, {width}x{height}, {args.storage}, {len(files)} file(s), "
          f"poses via {args.pose_source}), "
          f"{len(questions)} questions in {paths.questions}, scene in {paths.scene_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
