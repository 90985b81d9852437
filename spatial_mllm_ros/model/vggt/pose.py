# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Decode VGGT's pose encoding into OpenCV camera matrices.

Pose encoding [..., 9] = translation (3), quaternion x, y, z, w (scalar last, 4), fov_h, fov_w (radians).
Extrinsics are camera-from-world [R | t] (3x4); the quaternion is not normalised first: R is built with
2 / |q|^2, as in the published code. Intrinsics: fy = (H/2) / tan(fov_h/2), fx = (W/2) / tan(fov_w/2),
principal point at the image centre (W/2, H/2).
"""

from __future__ import annotations

import torch
from torch import Tensor


def quaternion_to_matrix(quaternions: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from quaternions [..., 4] in x, y, z, w order (any non-zero norm)."""
    i, j, k, r = torch.unbind(quaternions, -1)
    two_s = 2.0 / (quaternions * quaternions).sum(-1)
    matrix = torch.stack(
        (
            1 - two_s * (j * j + k * k),
            two_s * (i * j - k * r),
            two_s * (i * k + j * r),
            two_s * (i * j + k * r),
            1 - two_s * (i * i + k * k),
            two_s * (j * k - i * r),
            two_s * (i * k - j * r),
            two_s * (j * k + i * r),
            1 - two_s * (i * i + j * j),
        ),
        -1,
    )
    return matrix.reshape((*quaternions.shape[:-1], 3, 3))


def pose_encoding_to_extri_intri(pose_enc: Tensor, image_size_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Extrinsics [..., 3, 4] (camera-from-world) and intrinsics [..., 3, 3] from ``pose_enc`` [..., 9].

    ``image_size_hw`` is the (height, width) in pixels of the images the encoding was predicted for.
    """
    if pose_enc.shape[-1] != 9:
        raise ValueError(f"pose encoding must have 9 values in its last dimension, got {pose_enc.shape[-1]}")
    height, width = (int(v) for v in image_size_hw)
    translation = pose_enc[..., :3]
    rotation = quaternion_to_matrix(pose_enc[..., 3:7])
    extrinsics = torch.cat([rotation, translation[..., None]], dim=-1)
    fy = (height / 2.0) / torch.tan(pose_enc[..., 7] / 2.0)
    fx = (width / 2.0) / torch.tan(pose_enc[..., 8] / 2.0)
    intrinsics = torch.zeros((*pose_enc.shape[:-1], 3, 3), dtype=pose_enc.dtype, device=pose_enc.device)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = width / 2
    intrinsics[..., 1, 2] = height / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
