# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The VGGT model: aggregator plus only the heads asked for.

Spatial-MLLM needs only the aggregator; the VGGT frame-selection route needs the point head (and the camera
head for poses). Heads that are not asked for are not built, so they cost no memory.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from .aggregator import VGGTAggregator
from .config import HEAD_NAMES, VGGTConfig
from .heads import CameraHead, DPTHead


class VGGT(nn.Module):
    """Aggregator + optional camera / depth / point heads (published module names)."""

    def __init__(self, config: VGGTConfig, heads: Iterable[str] = HEAD_NAMES) -> None:
        super().__init__()
        heads = tuple(heads)
        unknown = sorted(set(heads) - set(HEAD_NAMES))
        if unknown:
            raise ValueError(f"unknown VGGT heads {unknown}: choose from {list(HEAD_NAMES)}")
        self.config = config
        self.heads = tuple(name for name in HEAD_NAMES if name in heads)
        self.aggregator = VGGTAggregator(config.aggregator)
        dim_in = 2 * config.aggregator.embed_dim
        patch = config.aggregator.patch_size
        self.camera_head = CameraHead(dim_in, config.camera_head) if "camera" in heads else None
        self.depth_head = DPTHead(dim_in, config.depth_head, patch, 2, "exp") if "depth" in heads else None
        self.point_head = (
            DPTHead(dim_in, config.point_head, patch, 4, "inv_log") if "point" in heads else None
        )

    def layers_read_by_heads(self) -> list[int]:
        """Aggregator layers the built heads read (the camera head the last, DPT heads four)."""
        wanted = {-1} if self.camera_head is not None else set()
        for head in (self.depth_head, self.point_head):
            if head is not None:
                wanted.update(head.config.intermediate_layer_idx)
        return sorted(wanted)

    def forward(self, images: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """Run the aggregator and the built heads.

        Args:
            images: [B, S, 3, H, W] or [S, 3, H, W], RGB in [0, 1].

        Returns:
            dict with, per built head: ``pose_enc`` [B, S, 9] and ``pose_enc_list`` (one per iteration);
            ``depth`` [B, S, H, W, 1] and ``depth_conf`` [B, S, H, W]; ``world_points`` [B, S, H, W, 3] and
            ``world_points_conf`` [B, S, H, W].
        """
        if images.ndim == 4:
            images = images[None]
        layers, patch_start_idx = self.aggregator(images, keep_layers=self.layers_read_by_heads())
        image_size_hw = (images.shape[-2], images.shape[-1])
        predictions: dict[str, Tensor | list[Tensor]] = {}
        if self.camera_head is not None:
            pose_enc_list = self.camera_head(layers)
            predictions["pose_enc"] = pose_enc_list[-1]
            predictions["pose_enc_list"] = pose_enc_list
        if self.depth_head is not None:
            predictions["depth"], predictions["depth_conf"] = self.depth_head(
                layers, image_size_hw, patch_start_idx
            )
        if self.point_head is not None:
            predictions["world_points"], predictions["world_points_conf"] = self.point_head(
                layers, image_size_hw, patch_start_idx
            )
        return predictions
