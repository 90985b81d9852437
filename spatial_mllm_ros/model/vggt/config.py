# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Sizes of the VGGT spatial encoder, as dataclasses.

The published VGGT constructor hard-codes most sizes (ViT-L/14 DINOv2, 24 alternating blocks, DPT heads with
256 features). Tests need tiny models, and Spatial-MLLM checkpoints made for tests carry the tiny sizes in
``spatial_config["fidelity_tiny_vggt"]``. The defaults below are the real VGGT-1B sizes; ``from_dict``
reads the fixture ``config.json`` layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# DINOv2 factories of the published code: name -> (embed_dim, depth, num_heads, mlp_ratio).
DINOV2_FACTORIES: dict[str, tuple[int, int, int, float]] = {
    "dinov2_vitl14_reg": (1024, 24, 16, 4.0),
    "dinov2_vitb14_reg": (768, 12, 12, 4.0),
    "dinov2_vits14_reg": (384, 12, 6, 4.0),
}

HEAD_NAMES = ("camera", "depth", "point")


def _pick(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keys of ``data`` that are fields of dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class DinoV2Config:
    """The DINOv2 ViT (with registers) used as the aggregator's patch embed."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6
    interpolate_antialias: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DinoV2Config:
        """Build from a dict with (a subset of) the field names."""
        return cls(**_pick(cls, data))


@dataclass
class VGGTAggregatorConfig:
    """The alternating frame/global attention aggregator (fields as in the published constructor)."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    patch_embed: str = "dinov2_vitl14_reg"
    aa_order: tuple[str, ...] = ("frame", "global")
    aa_block_size: int = 1
    qk_norm: bool = True
    rope_freq: float = 100
    init_values: float = 0.01
    dinov2: DinoV2Config = field(default_factory=DinoV2Config)

    def __post_init__(self) -> None:
        self.aa_order = tuple(self.aa_order)
        if isinstance(self.dinov2, dict):
            self.dinov2 = DinoV2Config.from_dict(self.dinov2)
        if self.patch_embed not in DINOV2_FACTORIES:
            raise ValueError(
                f"unsupported patch_embed {self.patch_embed!r}: expected one of {sorted(DINOV2_FACTORIES)}"
            )
        if self.dinov2.embed_dim != self.embed_dim:
            raise ValueError(
                f"DINOv2 embed_dim {self.dinov2.embed_dim} != aggregator embed_dim {self.embed_dim}"
            )
        if self.depth % self.aa_block_size != 0:
            raise ValueError(
                f"depth ({self.depth}) must be divisible by aa_block_size ({self.aa_block_size})"
            )
        if self.embed_dim % self.num_heads != 0 or (self.embed_dim // self.num_heads) % 4 != 0:
            raise ValueError("embed_dim / num_heads must be a multiple of 4 for the 2D RoPE")
        if sorted(self.aa_order) != ["frame", "global"]:
            raise ValueError(f"aa_order must hold 'frame' and 'global' once each, got {list(self.aa_order)}")

    @property
    def patch_start_idx(self) -> int:
        """Index of the first patch token: 1 camera token + the register tokens."""
        return 1 + self.num_register_tokens

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VGGTAggregatorConfig:
        """Build from the fixture/`fidelity_tiny_vggt` ``aggregator`` dict.

        When ``dinov2`` is absent, the sizes of the named DINOv2 factory are used.
        """
        kwargs = _pick(cls, data)
        name = kwargs.get("patch_embed", cls.patch_embed)
        if "dinov2" in data:
            kwargs["dinov2"] = DinoV2Config.from_dict(data["dinov2"])
        elif name in DINOV2_FACTORIES:
            dim, depth, heads, ratio = DINOV2_FACTORIES[name]
            kwargs["dinov2"] = DinoV2Config(embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=ratio)
        return cls(**kwargs)


@dataclass
class CameraHeadConfig:
    """The camera head: an iteratively refined pose encoding from the camera tokens."""

    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 0.01
    num_iterations: int = 4
    pose_encoding_type: str = "absT_quaR_FoV"
    trans_act: str = "linear"
    quat_act: str = "linear"
    fl_act: str = "relu"

    def __post_init__(self) -> None:
        if self.pose_encoding_type != "absT_quaR_FoV":
            raise ValueError(f"unsupported pose_encoding_type {self.pose_encoding_type!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraHeadConfig:
        """Build from a dict with (a subset of) the field names."""
        return cls(**_pick(cls, data))


@dataclass
class DPTHeadConfig:
    """A DPT dense head (depth or world points)."""

    features: int = 256
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    intermediate_layer_idx: tuple[int, int, int, int] = (4, 11, 17, 23)
    frames_chunk_size: int = 8

    def __post_init__(self) -> None:
        self.out_channels = tuple(int(c) for c in self.out_channels)
        self.intermediate_layer_idx = tuple(int(i) for i in self.intermediate_layer_idx)
        if len(self.out_channels) != 4 or len(self.intermediate_layer_idx) != 4:
            raise ValueError("DPT head needs exactly 4 out_channels and 4 intermediate_layer_idx")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DPTHeadConfig:
        """Build from a dict with (a subset of) the field names."""
        return cls(**_pick(cls, data))


@dataclass
class VGGTConfig:
    """The whole VGGT: aggregator plus head sizes (heads are built only when asked for)."""

    aggregator: VGGTAggregatorConfig = field(default_factory=VGGTAggregatorConfig)
    camera_head: CameraHeadConfig = field(default_factory=CameraHeadConfig)
    depth_head: DPTHeadConfig = field(default_factory=DPTHeadConfig)
    point_head: DPTHeadConfig = field(default_factory=DPTHeadConfig)

    def __post_init__(self) -> None:
        depth = self.aggregator.depth
        for name, head in (("depth_head", self.depth_head), ("point_head", self.point_head)):
            bad = [i for i in head.intermediate_layer_idx if not -depth <= i < depth]
            if bad:
                raise ValueError(f"{name}.intermediate_layer_idx {bad} out of range for {depth} layers")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VGGTConfig:
        """Build from a fixture ``config.json`` or a ``fidelity_tiny_vggt`` dict.

        Keys: ``aggregator``, ``camera_head``, and ``depth_head``/``point_head`` or a shared ``dpt_head``.
        """
        shared_dpt = data.get("dpt_head", {})
        return cls(
            aggregator=VGGTAggregatorConfig.from_dict(data.get("aggregator", {})),
            camera_head=CameraHeadConfig.from_dict(data.get("camera_head", {})),
            depth_head=DPTHeadConfig.from_dict({**shared_dpt, **data.get("depth_head", {})}),
            point_head=DPTHeadConfig.from_dict({**shared_dpt, **data.get("point_head", {})}),
        )


def vggt_config_from_spatial_config(spatial_config: dict[str, Any]) -> VGGTConfig:
    """The VGGT config of a Spatial-MLLM checkpoint's ``spatial_config``.

    Published checkpoints carry only img_size, patch_size and embed_dim and always use the full-size
    VGGT-1B; test checkpoints add ``fidelity_tiny_vggt`` with the tiny aggregator and head sizes.
    """
    tiny = spatial_config.get("fidelity_tiny_vggt")
    if tiny:
        return VGGTConfig.from_dict(tiny)
    aggregator = VGGTAggregatorConfig.from_dict(
        {k: spatial_config[k] for k in ("img_size", "patch_size", "embed_dim") if k in spatial_config}
    )
    return VGGTConfig(aggregator=aggregator)
