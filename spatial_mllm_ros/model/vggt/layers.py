# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Transformer building blocks shared by DINOv2, the VGGT aggregator and the camera head.

Module and parameter names (``norm1``, ``attn.qkv``, ``attn.q_norm``, ``ls1.gamma``, ``mlp.fc1`` ...) follow
the published VGGT so its state dicts load unchanged. Attention goes through
``torch.nn.functional.scaled_dot_product_attention``, as upstream does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        """Scale the last dimension by ``gamma``."""
        return x * self.gamma


class Mlp(nn.Module):
    """Linear -> GELU (erf) -> Linear."""

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, bias: bool = True
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the two-layer perceptron."""
        return self.fc2(self.act(self.fc1(x)))


class RotaryPositionEmbedding2D(nn.Module):
    """2D RoPE: the first half of each head is rotated by the row, the second half by the column.

    Rotate-half form; frequencies ``1 / base ** (2i / d)`` with ``d`` = head_dim / 2.
    """

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.base_frequency = frequency

    def _cos_sin(
        self, dim: int, length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        """Tables [length, dim] of cos and sin for positions 0..length-1."""
        exponents = torch.arange(0, dim, 2, device=device).float() / dim
        inv_freq = 1.0 / (self.base_frequency**exponents)  # [dim/2]
        positions = torch.arange(length, device=device, dtype=inv_freq.dtype)
        angles = torch.einsum("i,j->ij", positions, inv_freq).to(dtype)  # [length, dim/2]
        angles = torch.cat((angles, angles), dim=-1)  # [length, dim]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _rope_1d(self, x: Tensor, positions: Tensor, cos_table: Tensor, sin_table: Tensor) -> Tensor:
        # x: [B, heads, N, d]; positions: [B, N] -> cos/sin: [B, 1, N, d]
        cos = F.embedding(positions, cos_table)[:, None]
        sin = F.embedding(positions, sin_table)[:, None]
        return x * cos + self._rotate_half(x) * sin

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``tokens`` [B, heads, N, head_dim] by integer ``positions`` [B, N, 2] (row, col)."""
        half_dim = tokens.shape[-1] // 2
        length = int(positions.max()) + 1
        cos_table, sin_table = self._cos_sin(half_dim, length, tokens.device, tokens.dtype)
        rows, cols = tokens.chunk(2, dim=-1)
        rows = self._rope_1d(rows, positions[..., 0], cos_table, sin_table)
        cols = self._rope_1d(cols, positions[..., 1], cos_table, sin_table)
        return torch.cat((rows, cols), dim=-1)


def patch_positions(batch: int, rows: int, cols: int, num_special: int, device: torch.device) -> Tensor:
    """RoPE positions [batch, num_special + rows*cols, 2]: special tokens at (0, 0), patches at (r+1, c+1)."""
    # meshgrid rather than cartesian_prod: same values, and ONNX export supports it
    row, col = torch.meshgrid(
        torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij"
    )
    grid = torch.stack((row.reshape(-1), col.reshape(-1)), dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat([special, grid], dim=0)[None].expand(batch, -1, -1)


class Attention(nn.Module):
    """Multi-head self-attention with optional LayerNorm qk-norm and 2D RoPE."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        rope: RotaryPositionEmbedding2D | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """Attend over the tokens of ``x`` [B, N, C]; ``pos`` [B, N, 2] when RoPE is on."""
        batch, num_tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if pos is None:
                raise ValueError("RoPE attention needs token positions")
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(batch, num_tokens, channels)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        rope: RotaryPositionEmbedding2D | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, rope=rope
        )
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """Apply the block to ``x`` [B, N, C]."""
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
