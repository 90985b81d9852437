# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The monocular frame-selection route: VGGT world points feeding ``space_aware_points``.

A robot with depth and poses selects frames from sensor geometry (``space_aware``). A monocular camera or
a bag without depth/poses has no geometry, so, like upstream, VGGT predicts a point map for up to 128
evenly spaced candidate frames and the core ``SpaceAwarePointsSelector`` runs the coverage greedy on it.

The point map needs VGGT's aggregator and its point head. A loaded Spatial-MLLM already holds the
aggregator as its spatial encoder, so :class:`VGGTPointPredictor` REUSES that module (no second copy in
memory) and only the point head weights (``spatial_encoder.vggt_model.point_head.*``, a few MB at full
size) are read from the checkpoint. Without a Spatial-MLLM, a facebook/VGGT-1B-style directory (or the
VGGT part of a Spatial-MLLM checkpoint) is loaded with just the point head.

Numerics follow upstream's frame-selection preprocessing (longer side 518, bicubic, patch multiples) and
VGGT's forward. Only the aggregator layers the point head reads are kept, and the head runs over frames
in chunks (``frames_chunk_size`` of its config). All candidate frames go through the aggregator in ONE
pass by default: global attention is what puts every frame's points in one world frame. ``frames_per_pass``
trades that exactness for bounded memory (see :class:`VGGTPointPredictor`).

:class:`MonocularFallbackSelector` lets a geometric selector hand frames without depth/pose over to this
route instead of falling back to uniform sampling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.selection import Selection, SpaceAwarePointsSelector
from spatial_mllm_ros.model.loading import VGGT_PREFIX, resolve_dtype
from spatial_mllm_ros.model.vggt import (
    SPATIAL_MLLM_PREFIX,
    VGGT,
    VGGTAggregator,
    VGGTConfig,
    load_vggt,
    vggt_config_from_spatial_config,
)
from spatial_mllm_ros.model.vggt.heads import DPTHead
from spatial_mllm_ros.model.vggt.loading import load_module_weights, resize_frames_for_vggt

UPSTREAM_TARGET_SIZE = 518  # longer image side of upstream's VGGT frame-selection input
POINT_HEAD_PREFIX = VGGT_PREFIX + "point_head."
_FALLBACK_PREFIX = "uniform (fallback"
MONOCULAR_SELECTORS = ("vggt",)


def load_point_head(
    checkpoint_dir: str | Path,
    config: VGGTConfig,
    *,
    prefix: str = VGGT_PREFIX,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
) -> DPTHead:
    """Read ONLY the VGGT point head from a safetensors checkpoint directory (single file or shards).

    Args:
        checkpoint_dir: a Spatial-MLLM checkpoint (``prefix`` "spatial_encoder.vggt_model.") or a
            VGGT-1B-style directory (``prefix`` "").
        config: the VGGT sizes (the point head's config and the aggregator's embed/patch sizes are used).
        prefix: where the VGGT sits in the checkpoint's key names.
        dtype: parameter dtype of the returned head.
        device: where its parameters live.

    Raises:
        ValueError: no ``<prefix>point_head.*`` weights (names the missing keys), wrong shapes, unexpected
            point-head keys, or an unreadable/pickle checkpoint.
    """
    with torch.device("meta"):
        head = VGGT(config, heads=("point",)).point_head  # same construction as VGGT; the rest is dropped
    assert head is not None
    try:
        load_module_weights(head, checkpoint_dir, prefix=prefix + "point_head.", dtype=resolve_dtype(dtype),
                            device=device, what="VGGT point head")
    except ValueError as error:
        if "missing keys" not in str(error):
            raise
        raise ValueError(f"checkpoint {checkpoint_dir}: {error} (the VGGT frame-selection route needs the "
                         "point head weights; published Spatial-MLLM checkpoints and facebook/VGGT-1B "
                         "include them)") from None
    return head


class VGGTPointPredictor:
    """``predictor(rgb[T, H, W, 3] uint8) -> (world_points[T, h, w, 3], conf[T, h, w])`` float32 numpy.

    Runs VGGT's aggregator (keeping only the layers the point head reads) and its point head at
    ``target_size`` (longer side, upstream 518) under ``torch.inference_mode``.

    Args:
        aggregator: a VGGT aggregator; shared, never copied (e.g. a Spatial-MLLM's spatial encoder).
        point_head: the point DPT head on the aggregator's device and dtype.
        target_size: longer input side in pixels (rounded down to a patch multiple).
        frames_per_pass: None (default, exact): all frames in one aggregator pass, as upstream. An integer
            bounds memory: frames are processed in passes of at most this many, every pass after the
            first led by frame 0 as a shared anchor (its output dropped), so all points are expressed in
            frame 0's camera frame. Global attention then sees only one pass at a time: the (normalised)
            point scale can differ between passes, so selections can differ from upstream's.
    """

    def __init__(self, aggregator: VGGTAggregator, point_head: DPTHead,
                 target_size: int = UPSTREAM_TARGET_SIZE, frames_per_pass: int | None = None) -> None:
        patch = aggregator.config.patch_size
        if target_size < patch:
            raise ValueError(f"target_size {target_size} is smaller than the patch size {patch}")
        if frames_per_pass is not None and frames_per_pass < 2:
            raise ValueError(f"frames_per_pass must be >= 2 (anchor + one frame) or None, got "
                             f"{frames_per_pass}")
        self.aggregator = aggregator
        self.point_head = point_head
        self.target_size = int(target_size) - int(target_size) % patch
        self.frames_per_pass = frames_per_pass
        depth = aggregator.config.depth
        self._head_layers = sorted({i % depth for i in point_head.config.intermediate_layer_idx})

    @property
    def parameter(self) -> Tensor:
        """A point-head parameter (its device and dtype are the predictor's)."""
        return next(self.point_head.parameters())

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters this predictor added to memory: the point head's (the aggregator is shared)."""
        return list(self.point_head.parameters())

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [T, h, w, 3] and confidences [T, h, w] (float32) of uint8 RGB frames [T, H, W, 3].

        ``h x w`` is the resized resolution (longer side ``target_size``); points share one world frame
        (frame 0's camera; normalised, not metric scale).
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB frames [T, H, W, 3], got {rgb.dtype} {rgb.shape}")
        if rgb.shape[0] == 0:
            raise ValueError("no frames given")
        count = rgb.shape[0]
        step = self.frames_per_pass
        if step is None or count <= step:
            return self._run(rgb)
        points, conf = [], []
        first_points, first_conf = self._run(rgb[:step])
        points.append(first_points)
        conf.append(first_conf)
        for start in range(step, count, step - 1):
            chunk = np.concatenate([rgb[:1], rgb[start:start + step - 1]])
            chunk_points, chunk_conf = self._run(chunk)
            points.append(chunk_points[1:])  # drop the anchor frame's second prediction
            conf.append(chunk_conf[1:])
        return np.concatenate(points), np.concatenate(conf)

    def _run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One aggregator pass over all of ``rgb`` + the point head (chunked over frames)."""
        patch = self.aggregator.config.patch_size
        images = resize_frames_for_vggt(rgb, self.target_size, patch)  # [T, 3, h, w]
        parameter = self.parameter
        images = images.to(device=parameter.device, dtype=parameter.dtype)[None]  # [1, T, 3, h, w]
        with torch.inference_mode():
            layers, patch_start_idx = self.aggregator(images, keep_layers=self._head_layers)
            points, conf = self.point_head(layers, tuple(images.shape[-2:]), patch_start_idx)
            del layers
            points_np = points[0].float().cpu().numpy()  # [T, h, w, 3]
            conf_np = conf[0].float().cpu().numpy()  # [T, h, w]
        return points_np, conf_np

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spatial_mllm(cls, model: nn.Module, checkpoint_dir: str | Path | None = None,
                          **options: Any) -> VGGTPointPredictor:
        """Share a loaded Spatial-MLLM's aggregator (no copy).

        The point head comes from the model when it was loaded with ``load_spatial_heads=True``, else from
        ``checkpoint_dir`` (only ``spatial_encoder.vggt_model.point_head.*`` is read).

        ``options``: ``target_size``, ``frames_per_pass``.
        """
        vggt = model.spatial_encoder.vggt_model
        head = vggt.point_head
        if head is None:
            if checkpoint_dir is None:
                raise ValueError("the model was loaded without its VGGT heads: give checkpoint_dir (the "
                                 "model's checkpoint directory) to read the point head from")
            parameter = next(vggt.aggregator.parameters())
            head = load_point_head(checkpoint_dir, vggt.config, prefix=VGGT_PREFIX, dtype=parameter.dtype,
                                   device=parameter.device)
        return cls(vggt.aggregator, head, **options)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, *, spatial_mllm: bool | None = None,
                        config: VGGTConfig | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str = torch.float32, **options: Any) -> VGGTPointPredictor:
        """A standalone VGGT (aggregator + point head only) from a checkpoint directory.

        ``directory``: a facebook/VGGT-1B-style directory (``model.safetensors`` with ``aggregator.*`` and
        ``point_head.*``, optional ``config.json``) or a Spatial-MLLM checkpoint (only its
        ``spatial_encoder.vggt_model.{aggregator,point_head}.*`` is read). ``spatial_mllm`` None: decided
        by the config's ``model_type``. ``options``: ``target_size``, ``frames_per_pass``.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"VGGT checkpoint directory {str(directory)!r} does not exist")
        config_path = directory / "config.json"
        raw = json.loads(config_path.read_text()) if config_path.is_file() else {}
        if spatial_mllm is None:
            spatial_mllm = raw.get("model_type") == "spatial-mllm"
        if config is None:
            if spatial_mllm:
                config = vggt_config_from_spatial_config(raw.get("spatial_config", {}))
            elif "aggregator" in raw:  # this project's / the fixtures' nested layout
                config = VGGTConfig.from_dict(raw)
            else:  # facebook/VGGT-1B's config.json carries img_size, patch_size, embed_dim
                config = vggt_config_from_spatial_config(raw)
        try:
            vggt = load_vggt(directory, config, heads=("point",), prefix=SPATIAL_MLLM_PREFIX if spatial_mllm
                             else "", dtype=resolve_dtype(dtype), device=device)
        except ValueError as error:
            raise ValueError(f"cannot load VGGT aggregator + point head from {directory}: {error}") from None
        return cls(vggt.aggregator, vggt.point_head, **options)


def make_vggt_points_selector(model: nn.Module | None = None, checkpoint_dir: str | Path | None = None,
                              vggt_dir: str | Path | None = None, device: str | torch.device = "cpu",
                              dtype: torch.dtype | str = torch.float32,
                              target_size: int = UPSTREAM_TARGET_SIZE, frames_per_pass: int | None = None,
                              **selector_params: Any) -> SpaceAwarePointsSelector:
    """A ready ``space_aware_points`` selector driven by VGGT.

    Sources, in order of preference:

    * ``model`` (a loaded ``SpatialMLLMForConditionalGeneration``): its aggregator is shared; the point
      head is read from ``checkpoint_dir`` (the model's checkpoint) unless the model already has it.
      ``device``/``dtype`` follow the model.
    * ``vggt_dir``: a separate facebook/VGGT-1B-style checkpoint, loaded on ``device`` in ``dtype``.
    * ``checkpoint_dir`` alone: the VGGT part of a Spatial-MLLM checkpoint, loaded standalone.

    ``selector_params`` go to :class:`SpaceAwarePointsSelector` (``max_candidates`` (128), ``fill``, ...).
    Raises ValueError when no source is given or the checkpoint lacks the point head (keys named).
    """
    options = {"target_size": target_size, "frames_per_pass": frames_per_pass}
    if model is not None:
        predictor = VGGTPointPredictor.from_spatial_mllm(model, checkpoint_dir, **options)
    elif vggt_dir is not None:
        predictor = VGGTPointPredictor.from_checkpoint(vggt_dir, spatial_mllm=False, device=device,
                                                       dtype=dtype, **options)
    elif checkpoint_dir is not None:
        predictor = VGGTPointPredictor.from_checkpoint(checkpoint_dir, spatial_mllm=True, device=device,
                                                       dtype=dtype, **options)
    else:
        raise ValueError("the VGGT selection route needs a loaded Spatial-MLLM model, its checkpoint_dir, "
                         "or a vggt_dir")
    try:
        return SpaceAwarePointsSelector(predictor=predictor, **selector_params)
    except TypeError as error:
        raise ValueError(f"bad parameters for selector 'space_aware_points': {error}") from error


class MonocularFallbackSelector:
    """A geometric selector that hands frames without usable depth/pose/K to the VGGT route.

    ``select`` runs ``primary`` (e.g. ``space_aware``); when it falls back to uniform sampling (no usable
    geometry, no depth in range), ``monocular`` (a VGGT ``space_aware_points`` selector) selects instead
    and its ``method`` says why.
    """

    def __init__(self, primary: Any, monocular: SpaceAwarePointsSelector) -> None:
        self.primary = primary
        self.monocular = monocular
        self.name = getattr(primary, "name", type(primary).__name__)

    def select(self, frames: Sequence[Frame], k: int) -> Selection:
        """The primary's selection, or the VGGT route's where the primary had no geometry."""
        selection = self.primary.select(frames, k)
        if not selection.method.startswith(_FALLBACK_PREFIX):
            return selection
        reason = selection.method[len(_FALLBACK_PREFIX):].lstrip(": ").removesuffix(")")
        monocular = self.monocular.select(frames, k)
        if not monocular.method.startswith(_FALLBACK_PREFIX):
            monocular.method = f"{monocular.method} (monocular fallback from {self.name}: {reason})"
        return monocular

    def __getattr__(self, name: str) -> Any:
        """Anything else (``insert``, ``forget_before``, ...) is the primary's."""
        if name in ("primary", "monocular"):
            raise AttributeError(name)
        return getattr(self.primary, name)


def with_vggt_route(selector: Any, selector_name: str, model: nn.Module, checkpoint_dir: str | Path,
                    monocular_selector: str | None = None,
                    selector_params: Mapping[str, Any] | None = None,
                    vggt_options: Mapping[str, Any] | None = None) -> Any:
    """The engine's frame selector once its Spatial-MLLM is loaded (one call in ``SpatialQA``).

    * ``selector_name == "space_aware_points"``: a VGGT-driven selector sharing ``model``'s aggregator,
      built with ``selector_params`` (the core selector's options: ``max_candidates``, ``fill``, ...).
    * ``monocular_selector == "vggt"``: ``selector`` wrapped in :class:`MonocularFallbackSelector`, so
      frames without depth/pose/K use the VGGT route (default selector options) instead of uniform sampling.
    * otherwise ``selector`` unchanged.

    ``vggt_options``: ``target_size`` (518) and ``frames_per_pass`` (None) of :class:`VGGTPointPredictor`.
    Raises ValueError for an unknown ``monocular_selector`` or a checkpoint without the point head.
    """
    if monocular_selector not in (None, "", *MONOCULAR_SELECTORS):
        raise ValueError(f"unknown monocular_selector {monocular_selector!r}; choose from "
                         f"{list(MONOCULAR_SELECTORS)} or None")
    options = dict(vggt_options or {})
    if selector_name == SpaceAwarePointsSelector.name:
        return make_vggt_points_selector(model=model, checkpoint_dir=checkpoint_dir,
                                         **options, **dict(selector_params or {}))
    if monocular_selector:
        return MonocularFallbackSelector(selector, make_vggt_points_selector(
            model=model, checkpoint_dir=checkpoint_dir, **options))
    return selector
