# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The VGGT aggregator: DINOv2 patch tokens refined by alternating frame and global attention.

This is the spatial encoder of Spatial-MLLM (the connector reads its last layer) and the trunk of the
VGGT heads. Frame blocks attend within a frame ([B*S, T, C]); global blocks attend across all frames of a
sequence ([B, S*T, C]). Each frame gets a camera token and register tokens in front of its patch tokens
(slot 0 for the first frame of the sequence, slot 1 for the others). Output layer i is the i-th frame
block output concatenated with the i-th global block output along channels.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from .config import VGGTAggregatorConfig
from .dinov2 import DinoVisionTransformer
from .layers import Block, RotaryPositionEmbedding2D, patch_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_and_rest(tokens: Tensor, batch: int, frames: int) -> Tensor:
    """Special tokens [1, 2, X, C] -> [B*S, X, C]: slot 0 for frame 0, slot 1 for the other frames."""
    first = tokens[:, 0:1].expand(batch, 1, *tokens.shape[2:])
    rest = tokens[:, 1:].expand(batch, frames - 1, *tokens.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(batch * frames, *tokens.shape[2:])


class VGGTAggregator(nn.Module):
    """Alternating-attention aggregator with the published parameter names (``aggregator.*``)."""

    def __init__(self, config: VGGTAggregatorConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_size = config.patch_size
        self.patch_start_idx = config.patch_start_idx
        self.patch_embed = DinoVisionTransformer(
            config.dinov2, config.img_size, config.patch_size, config.num_register_tokens
        )
        self.rope = RotaryPositionEmbedding2D(config.rope_freq) if config.rope_freq > 0 else None

        def make_block() -> Block:
            return Block(
                dim,
                config.num_heads,
                mlp_ratio=config.mlp_ratio,
                qkv_bias=config.qkv_bias,
                proj_bias=config.proj_bias,
                ffn_bias=config.ffn_bias,
                init_values=config.init_values,
                qk_norm=config.qk_norm,
                rope=self.rope,
            )

        self.frame_blocks = nn.ModuleList([make_block() for _ in range(config.depth)])
        self.global_blocks = nn.ModuleList([make_block() for _ in range(config.depth)])
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, config.num_register_tokens, dim))

    def forward(self, images: Tensor, keep_layers: Collection[int] | None = None) -> tuple[list[Tensor], int]:
        """Run the aggregator.

        Args:
            images: [B, S, 3, H, W] RGB in [0, 1] (not normalised); H and W multiples of the patch size.
            keep_layers: indices (negative allowed) of the layers the caller will read. The others are
                returned as ``None`` and never concatenated, so a caller needing one layer (Spatial-MLLM
                reads only the last) does not hold all of them: ~5 GB at 16 frames of 768*28*28 in bf16.

        Returns:
            (layers, patch_start_idx): ``depth`` entries [B, S, 5+P, 2C] (``None`` where not kept) and the
            index of the first patch token (1 camera + register tokens).
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [B, S, 3, H, W], got shape {tuple(images.shape)}")
        batch, frames, _, height, width = images.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}"
            )
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        images = (images - mean) / std

        patch_tokens = self.patch_embed(images.reshape(batch * frames, 3, height, width))  # [B*S, P, C]
        camera = _first_and_rest(self.camera_token, batch, frames)  # [B*S, 1, C]
        registers = _first_and_rest(self.register_token, batch, frames)  # [B*S, R, C]
        tokens = torch.cat([camera, registers, patch_tokens], dim=1)  # [B*S, T, C]
        _, num_tokens, channels = tokens.shape

        pos = None
        if self.rope is not None:
            pos = patch_positions(
                batch * frames,
                height // self.patch_size,
                width // self.patch_size,
                self.patch_start_idx,
                images.device,
            )  # [B*S, T, 2]
        frame_pos = pos
        global_pos = None if pos is None else pos.reshape(batch, frames * num_tokens, 2)

        num_layers = self.config.depth // self.config.aa_block_size * self.config.aa_block_size
        kept = (set(range(num_layers)) if keep_layers is None
                else {index % num_layers for index in keep_layers})
        outputs: list[Tensor | None] = []
        frame_idx = global_idx = 0
        for _ in range(self.config.depth // self.config.aa_block_size):
            frame_out: list[Tensor] = []
            global_out: list[Tensor] = []
            for attn_type in self.config.aa_order:
                if attn_type == "frame":
                    tokens = tokens.reshape(batch * frames, num_tokens, channels)
                    for _ in range(self.config.aa_block_size):
                        tokens = self.frame_blocks[frame_idx](tokens, pos=frame_pos)
                        frame_idx += 1
                        frame_out.append(tokens.reshape(batch, frames, num_tokens, channels))
                else:
                    tokens = tokens.reshape(batch, frames * num_tokens, channels)
                    for _ in range(self.config.aa_block_size):
                        tokens = self.global_blocks[global_idx](tokens, pos=global_pos)
                        global_idx += 1
                        global_out.append(tokens.reshape(batch, frames, num_tokens, channels))
            for frame_layer, global_layer in zip(frame_out, global_out, strict=True):
                keep = len(outputs) in kept  # [B, S, T, 2C] when kept
                outputs.append(torch.cat([frame_layer, global_layer], dim=-1) if keep else None)
        return outputs, self.patch_start_idx
