# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The "MLP-add" connector of Spatial-MLLM: VGGT patch features -> the LLM's video-token space.

The VGGT aggregator sees the same frames at the same resolution as Qwen's vision tower, so its 14-pixel
patch grid equals Qwen's pre-merge grid. The connector regroups the patch features exactly like Qwen's
patch merger groups its patches (2 frames x 2x2 patches per merged token), so that connector output row k
belongs to the same merged video token as vision-tower output row k; the two are then ADDED.

Feature layout of one merged token (published implementation): index
``((sub_row * 2 + sub_col) * C2 + channel) * 2 + frame_in_pair``, i.e. sub-patch outermost, then channel,
then the frame of the temporal pair (fastest).
"""

from __future__ import annotations

from torch import Tensor, nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRMSNorm


def merge_spatial_patches(
    patch_tokens: Tensor,
    grid_thw: tuple[int, int, int],
    spatial_merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> Tensor:
    """Regroup per-frame patch features like Qwen's merger.

    ``patch_tokens``: [T, grid_h*grid_w, C2] (special tokens already dropped), T = grid_t*temporal_patch_size.
    Returns [grid_t*(grid_h/m)*(grid_w/m), m*m*C2*temporal_patch_size] in Qwen's merged-token order
    (t, merged row, merged column).
    """
    grid_t, grid_h, grid_w = (int(v) for v in grid_thw)
    frames, patches, channels = patch_tokens.shape
    merge = spatial_merge_size
    if frames != grid_t * temporal_patch_size or patches != grid_h * grid_w:
        raise ValueError(
            f"spatial features [{frames}, {patches}, {channels}] do not match video grid {grid_thw}: "
            f"expected {grid_t * temporal_patch_size} frames of {grid_h}x{grid_w} patches (same frames and "
            "resolution for the vision tower and VGGT)"
        )
    # [gt, pair, gh/m, m, gw/m, m, C2]
    tokens = patch_tokens.reshape(
        grid_t, temporal_patch_size, grid_h // merge, merge, grid_w // merge, merge, channels
    )
    # -> [gt, gh/m, gw/m, sub_row, sub_col, C2, pair]
    tokens = tokens.permute(0, 2, 4, 3, 5, 6, 1)
    return tokens.reshape(
        grid_t * (grid_h // merge) * (grid_w // merge), merge * merge * channels * temporal_patch_size
    )


class MLPAddConnector(nn.Module):
    """RMSNorm(eps 1e-6) -> Linear -> GELU(erf) -> Linear on merged VGGT features (``connector.*`` keys)."""

    def __init__(
        self,
        spatial_dim: int,
        out_dim: int,
        spatial_merge_size: int = 2,
        temporal_patch_size: int = 2,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.spatial_merge_size = spatial_merge_size
        self.temporal_patch_size = temporal_patch_size
        merged_dim = spatial_dim * spatial_merge_size**2 * temporal_patch_size
        self.ln_q = Qwen2_5_VLRMSNorm(merged_dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(merged_dim, merged_dim), nn.GELU(), nn.Linear(merged_dim, out_dim))

    def merge(self, patch_tokens: Tensor, grid_thw: tuple[int, int, int]) -> Tensor:
        """[T, P, C2] patch features -> [N_merged, merged_dim] (see :func:`merge_spatial_patches`)."""
        return merge_spatial_patches(
            patch_tokens, grid_thw, self.spatial_merge_size, self.temporal_patch_size
        )

    def project(self, merged: Tensor) -> Tensor:
        """[N, merged_dim] -> [N, out_dim]."""
        return self.mlp(self.ln_q(merged))

    def forward(self, patch_tokens: Tensor, grid_thw: tuple[int, int, int]) -> Tensor:
        """[T, P, C2] patch features of one video -> [N_merged, out_dim] to add to its video embeddings."""
        weight_dtype = self.mlp[0].weight.dtype
        return self.project(self.merge(patch_tokens.to(weight_dtype), grid_thw))


def drop_special_tokens(layer_output: Tensor, patch_start_idx: int) -> Tensor:
    """[S, 5+P, C2] aggregator layer of one video -> [S, P, C2] patch tokens."""
    return layer_output[:, patch_start_idx:, :]


__all__ = ["MLPAddConnector", "drop_special_tokens", "merge_spatial_patches"]
