# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""DINOv2 ViT with register tokens: the VGGT aggregator's patch embed.

Only the inference path VGGT uses: 14x14 conv patches, cls token, the position embedding (trained on a
37x37 grid) resized bicubically with antialias to the input grid, register tokens after cls (no position
embedding), the blocks, the final LayerNorm, and the normed patch tokens out (``x_norm_patchtokens``).
Parameter names match the published ``aggregator.patch_embed.*`` keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DinoV2Config
from .layers import Block


class PatchEmbedConv(nn.Module):
    """Non-overlapping conv patches: [N, 3, H, W] -> [N, (H/p)*(W/p), C]."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """Embed the patches of ``x``; H and W must be multiples of the patch size."""
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT with registers, inference only."""

    def __init__(
        self, config: DinoV2Config, img_size: int, patch_size: int, num_register_tokens: int
    ) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = config.interpolate_antialias
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbedConv(patch_size, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, dim)) if num_register_tokens else None
        )
        # Never used at inference, kept so the published state dict loads without leftovers.
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [
                Block(
                    dim,
                    config.num_heads,
                    mlp_ratio=config.mlp_ratio,
                    init_values=1.0,
                    norm_eps=config.layer_norm_eps,
                )
                for _ in range(config.depth)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int) -> Tensor:
        """Position embedding [1, 1 + (H/p)*(W/p), C] for an image of ``height`` x ``width`` pixels."""
        trained = self.pos_embed.shape[1] - 1
        if num_patches == trained and height == width:
            return self.pos_embed
        dtype = self.pos_embed.dtype
        pos_embed = self.pos_embed.float()
        cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
        side = int(math.sqrt(trained))
        if side * side != trained:
            raise ValueError(f"position embedding has {trained} patch rows, not a square grid")
        dim = pos_embed.shape[-1]
        grid = (height // self.patch_size, width // self.patch_size)
        patch_pos = F.interpolate(
            patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2),  # [1, C, 37, 37]
            size=grid,
            mode="bicubic",
            antialias=self.interpolate_antialias,
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)  # [1, h*w, C] row-major
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def prepare_tokens(self, images: Tensor) -> Tensor:
        """Tokens [N, 1 + R + P, C]: cls (+pos), registers, patches (+pos)."""
        height, width = images.shape[-2:]
        x = self.patch_embed(images)  # [N, P, C]
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1] - 1, height, width)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
        return x

    def forward(self, images: Tensor) -> Tensor:
        """Normed patch tokens [N, P, C] of ``images`` [N, 3, H, W] (already ImageNet-normalised)."""
        x = self.prepare_tokens(images)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens :]
