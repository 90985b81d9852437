# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""VGGT prediction heads: camera pose encoding, and DPT dense heads for depth and world points.

These serve the VGGT frame-selection route (monocular input: world points + confidence) and camera
estimates. Parameter names follow the published ``camera_head.*`` / ``depth_head.*`` / ``point_head.*`` keys.
The track head of the published model is not built (its checkpoint keys are skipped by the loader).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CameraHeadConfig, DPTHeadConfig
from .layers import Block, Mlp

POSE_ENCODING_DIM = 9  # translation (3), quaternion xyzw (4), fov_h, fov_w


def _activate(x: Tensor, kind: str) -> Tensor:
    """Output activations of the published heads."""
    if kind == "linear":
        return x
    if kind == "exp":
        return torch.exp(x)
    if kind == "relu":
        return F.relu(x)
    if kind == "inv_log":
        return torch.sign(x) * torch.expm1(torch.abs(x))
    if kind == "expp1":
        return 1 + x.exp()
    raise ValueError(f"unknown activation {kind!r}")


class CameraHead(nn.Module):
    """Pose encoding [B, S, 9] from the camera tokens of the last aggregator layer, refined iteratively.

    Each iteration embeds the current estimate (a learned empty pose first), modulates the normed camera
    tokens with it (adaLN shift/scale/gate), runs the trunk and adds the predicted delta.
    """

    def __init__(self, dim_in: int, config: CameraHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = nn.Sequential(
            *[
                Block(dim_in, config.num_heads, mlp_ratio=config.mlp_ratio, init_values=config.init_values)
                for _ in range(config.trunk_depth)
            ]
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def _activate_pose(self, pose_enc: Tensor) -> Tensor:
        cfg = self.config
        return torch.cat(
            [
                _activate(pose_enc[..., :3], cfg.trans_act),
                _activate(pose_enc[..., 3:7], cfg.quat_act),
                _activate(pose_enc[..., 7:], cfg.fl_act),
            ],
            dim=-1,
        )

    def forward(self, aggregated_tokens: list[Tensor], num_iterations: int | None = None) -> list[Tensor]:
        """One activated pose encoding [B, S, 9] per refinement iteration (the last is the answer)."""
        pose_tokens = self.token_norm(aggregated_tokens[-1][:, :, 0])  # [B, S, 2C]
        batch, frames, _ = pose_tokens.shape
        estimate: Tensor | None = None
        results: list[Tensor] = []
        for _ in range(num_iterations or self.config.num_iterations):
            if estimate is None:
                conditioning = self.embed_pose(self.empty_pose_tokens.expand(batch, frames, -1))
            else:
                conditioning = self.embed_pose(estimate.detach())
            shift, scale, gate = self.poseLN_modulation(conditioning).chunk(3, dim=-1)
            modulated = gate * (self.adaln_norm(pose_tokens) * (1 + scale) + shift) + pose_tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(modulated)))
            estimate = delta if estimate is None else estimate + delta
            results.append(self._activate_pose(estimate))
        return results


def _sincos_1d(embed_dim: int, positions: Tensor, omega_0: float = 100.0) -> Tensor:
    """[M, embed_dim] = [sin(p * w), cos(p * w)] with w = omega_0 ** -(i / (embed_dim/2)), in float64."""
    omega = torch.arange(embed_dim // 2, dtype=torch.float64, device=positions.device)
    omega = 1.0 / omega_0 ** (omega / (embed_dim / 2.0))
    angles = torch.einsum("m,d->md", positions.reshape(-1), omega)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def _uv_position_embedding(
    channels: int, rows: int, cols: int, aspect: float, device: torch.device
) -> Tensor:
    """Sin/cos embedding [channels, rows, cols] (float32) of a UV grid normalised by the image diagonal."""
    diag = (aspect**2 + 1.0) ** 0.5
    span_x, span_y = aspect / diag, 1.0 / diag
    u = torch.linspace(-span_x * (cols - 1) / cols, span_x * (cols - 1) / cols, cols, device=device)
    v = torch.linspace(-span_y * (rows - 1) / rows, span_y * (rows - 1) / rows, rows, device=device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")  # each [rows, cols]
    emb = torch.cat(
        [_sincos_1d(channels // 2, uu.reshape(-1)), _sincos_1d(channels // 2, vv.reshape(-1))], dim=-1
    )
    return emb.view(rows, cols, channels).permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3, plus the skip.

    The published unit uses an in-place ReLU, which also rectifies the skip input; that is reproduced here.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the unit to ``x`` [N, F, h, w]."""
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """DPT fusion: (x + unit1(skip)) -> unit2 -> bilinear resize (align_corners) -> 1x1 conv."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        """Fuse ``x`` with ``skip`` and resize to ``size`` (default: twice the input size)."""
        if self.resConfUnit1 is not None and skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Dense per-pixel prediction from four aggregator layers (DPT), with a confidence channel.

    Returns (prediction [B, S, H, W, output_dim-1], confidence [B, S, H, W]).
    """

    def __init__(
        self,
        dim_in: int,
        config: DPTHeadConfig,
        patch_size: int,
        output_dim: int,
        activation: str,
        conf_activation: str = "expp1",
    ) -> None:
        super().__init__()
        self.config = config
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        features = config.features
        out_channels = config.out_channels
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, oc, kernel_size=1) for oc in out_channels])
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        scratch = nn.Module()
        for i, channels in enumerate(out_channels, start=1):
            setattr(
                scratch, f"layer{i}_rn", nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False)
            )
        scratch.refinenet1 = FeatureFusionBlock(features)
        scratch.refinenet2 = FeatureFusionBlock(features)
        scratch.refinenet3 = FeatureFusionBlock(features)
        scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, output_dim, kernel_size=1),
        )
        self.scratch = scratch

    def _add_pos_embed(self, x: Tensor, width: int, height: int, ratio: float = 0.1) -> Tensor:
        pos = _uv_position_embedding(x.shape[1], x.shape[-2], x.shape[-1], width / height, x.device)
        return x + (pos * ratio).to(x.dtype)[None]

    def _forward_frames(self, layers: dict[int, Tensor], patch_start_idx: int, height: int, width: int
                        ) -> Tensor:
        """Raw head output [N, output_dim, H, W] for ``layers`` (layer index -> [B, s, T, 2C])."""
        batch, frames = next(iter(layers.values())).shape[:2]
        rows, cols = height // self.patch_size, width // self.patch_size
        features = []
        for i, layer_idx in enumerate(self.config.intermediate_layer_idx):
            x = layers[layer_idx][:, :, patch_start_idx:].reshape(batch * frames, rows * cols, -1)
            x = self.norm(x)
            x = x.permute(0, 2, 1).reshape(batch * frames, x.shape[-1], rows, cols)  # [N, 2C, h, w]
            x = self.projects[i](x)
            x = self._add_pos_embed(x, width, height)
            features.append(self.resize_layers[i](x))
        s = self.scratch
        rn1, rn2, rn3, rn4 = (getattr(s, f"layer{i}_rn")(f) for i, f in enumerate(features, start=1))
        out = s.refinenet4(rn4, size=rn3.shape[2:])
        out = s.refinenet3(out, rn3, size=rn2.shape[2:])
        out = s.refinenet2(out, rn2, size=rn1.shape[2:])
        out = s.refinenet1(out, rn1)
        out = s.output_conv1(out)
        out = F.interpolate(
            out, size=(rows * self.patch_size, cols * self.patch_size), mode="bilinear", align_corners=True
        )
        out = self._add_pos_embed(out, width, height)
        return s.output_conv2(out)

    def forward(
        self, aggregated_tokens: list[Tensor], image_size_hw: tuple[int, int], patch_start_idx: int
    ) -> tuple[Tensor, Tensor]:
        """Predictions [B, S, H, W, output_dim-1] and confidence [B, S, H, W], frames processed in chunks."""
        height, width = image_size_hw
        read = self.config.intermediate_layer_idx
        batch, frames = aggregated_tokens[read[0]].shape[:2]
        chunk = self.config.frames_chunk_size or frames
        preds, confs = [], []
        for start in range(0, frames, chunk):
            # Only the layers this head reads are sliced: the others may be None (aggregator keep_layers).
            layers = {i: aggregated_tokens[i][:, start : start + chunk] for i in read}
            raw = self._forward_frames(layers, patch_start_idx, height, width)  # [N, D, H, W]
            fmap = raw.permute(0, 2, 3, 1)
            pred = _activate(fmap[..., :-1], self.activation)
            conf = _activate(fmap[..., -1], self.conf_activation)
            preds.append(pred.reshape(batch, -1, *pred.shape[1:]))
            confs.append(conf.reshape(batch, -1, *conf.shape[1:]))
        return torch.cat(preds, dim=1), torch.cat(confs, dim=1)
