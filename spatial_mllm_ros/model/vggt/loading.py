# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Load VGGT weights from safetensors: a facebook/VGGT-1B-style state dict or a Spatial-MLLM checkpoint.

Only safetensors are read (never pickle). The model is built on the meta device and the checkpoint
tensors are assigned one by one, converted to the requested dtype as they are read, so no float32 copy
of a bf16 model is materialised and heads that are not asked for are neither built nor read. Every
problem (missing key, unexpected key, wrong shape) is reported at once in a ValueError naming the keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from .config import HEAD_NAMES, VGGTConfig
from .model import VGGT

# Key prefixes (inside the VGGT module) of every head of the published model.
HEAD_KEY_PREFIXES = {
    "camera": "camera_head.",
    "depth": "depth_head.",
    "point": "point_head.",
    "track": "track_head.",
}
SPATIAL_MLLM_PREFIX = "spatial_encoder.vggt_model."
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class _TensorSource:
    """Lazy read access to named tensors: key -> shape without reading, key -> tensor on demand."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], read: Callable[[str], Tensor]) -> None:
        self.shapes = shapes
        self.read = read


def _from_mapping(state_dict: Mapping[str, Tensor]) -> _TensorSource:
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    return _TensorSource(shapes, lambda key: state_dict[key])


def _from_safetensors_files(files: list[Path]) -> _TensorSource:
    handles = [safe_open(str(f), framework="pt") for f in files]
    owner: dict[str, object] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for handle in handles:
        names = handle.keys()  # a safetensors handle is not iterable itself
        for key in names:
            owner[key] = handle
            shapes[key] = tuple(handle.get_slice(key).get_shape())
    return _TensorSource(shapes, lambda key: owner[key].get_tensor(key))


def _open_source(source: Mapping[str, Tensor] | str | Path) -> _TensorSource:
    """A tensor source for a state dict, a .safetensors file, or a checkpoint directory (sharded or not)."""
    if isinstance(source, Mapping):
        return _from_mapping(source)
    path = Path(source)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(
            f"refusing to load {path.name}: pickle-based checkpoints are unsafe; use safetensors"
        )
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            return _from_safetensors_files([path / name for name in sorted(set(weight_map.values()))])
        single = path / "model.safetensors"
        if single.is_file():
            return _from_safetensors_files([single])
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(f"refusing to load {pickles} in {path}: only safetensors checkpoints are read")
        raise ValueError(f"no model.safetensors or model.safetensors.index.json in {path}")
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"refusing to load {path.name}: only .safetensors checkpoints are read")
    return _from_safetensors_files([path])


def _summarise(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_vggt(
    state_dict_or_path: Mapping[str, Tensor] | str | Path,
    config: VGGTConfig | None = None,
    heads: Iterable[str] = HEAD_NAMES,
    *,
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> VGGT:
    """Build a VGGT with the requested heads and load its weights, in eval mode without gradients.

    Args:
        state_dict_or_path: a state dict, a ``.safetensors`` file, or a directory holding
            ``model.safetensors`` or a sharded ``model.safetensors.index.json``. Pickle files are refused.
        config: sizes; default the full-size VGGT-1B.
        heads: subset of ("camera", "depth", "point"); ``()`` for the aggregator only.
        prefix: where the VGGT sits in the checkpoint: "" for facebook/VGGT-1B, or
            ``SPATIAL_MLLM_PREFIX`` ("spatial_encoder.vggt_model.") for a Spatial-MLLM checkpoint. Keys
            outside the prefix are ignored.
        dtype: parameter dtype; tensors are converted one at a time while loading.
        device: where the parameters live.

    Returns:
        The model. ``model.ignored_checkpoint_keys`` lists the checkpoint keys not loaded (heads not asked
        for, the track head).

    Raises:
        ValueError: unreadable/pickle checkpoint, or missing, unexpected or wrongly shaped keys (named).
    """
    config = config or VGGTConfig()
    with torch.device("meta"):
        model = VGGT(config, tuple(heads))
    skipped_prefixes = tuple(p for name, p in HEAD_KEY_PREFIXES.items() if name not in model.heads)
    ignored = load_module_weights(model, state_dict_or_path, prefix=prefix, skipped_prefixes=skipped_prefixes,
                                  dtype=dtype, device=device)
    model.ignored_checkpoint_keys = ignored
    return model


def load_module_weights(
    module: nn.Module,
    state_dict_or_path: Mapping[str, Tensor] | str | Path,
    *,
    prefix: str = "",
    skipped_prefixes: tuple[str, ...] = (),
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    what: str = "VGGT",
) -> list[str]:
    """Load ``<prefix>*`` checkpoint tensors into ``module`` (built on the meta device), one at a time.

    Keys under ``prefix`` must match the module exactly, except those starting with one of
    ``skipped_prefixes`` (returned as ignored). The module ends in eval mode without gradients.

    Raises:
        ValueError: unreadable/pickle checkpoint, or missing, unexpected or wrongly shaped keys (named).
    """
    source = _open_source(state_dict_or_path)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found: dict[str, str] = {}  # module key -> checkpoint key
    ignored: list[str] = []
    unexpected: list[str] = []
    for ckpt_key in source.shapes:
        if not ckpt_key.startswith(prefix):
            continue
        key = ckpt_key[len(prefix) :]
        if key in expected:
            found[key] = ckpt_key
        elif key.startswith(skipped_prefixes):
            ignored.append(ckpt_key)
        else:
            unexpected.append(ckpt_key)
    missing = [prefix + k for k in expected if k not in found]
    mismatched = [
        f"{found[k]} {list(source.shapes[found[k]])} (expected {list(shape)})"
        for k, shape in expected.items()
        if k in found and source.shapes[found[k]] != shape
    ]
    problems = []
    if not found and not ignored and not unexpected:
        problems.append(f"no checkpoint key starts with the prefix {prefix!r}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_summarise(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch ({len(mismatched)}): {_summarise(mismatched)}")
    if problems:
        raise ValueError(f"{what} checkpoint does not match the model config: " + "; ".join(problems))

    state = {}
    for key, ckpt_key in found.items():
        tensor = source.read(ckpt_key)
        target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
        state[key] = tensor.to(device=device, dtype=target_dtype)
    module.load_state_dict(state, strict=True, assign=True)
    module.eval().requires_grad_(False)
    return sorted(ignored)


def resize_frames_for_vggt(frames_uint8: np.ndarray, target_size: int, patch_size: int) -> Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, h, w] float in [0, 1], h and w multiples of ``patch_size``.

    As the published frame-selection preprocessing: the longer side goes to ``target_size`` (the width
    for landscape frames), the other side is rounded to a multiple of the patch size, bicubic resampling,
    and a centre crop to ``target_size`` if the rounding overshoots.
    """
    frames = torch.from_numpy(np.ascontiguousarray(frames_uint8)).permute(0, 3, 1, 2).float() / 255.0
    height, width = frames.shape[-2:]
    if width >= height:
        new_w, new_h = (
            target_size,
            max(patch_size, round(height * target_size / width / patch_size) * patch_size),
        )
    else:
        new_h, new_w = (
            target_size,
            max(patch_size, round(width * target_size / height / patch_size) * patch_size),
        )
    if (new_h, new_w) != (height, width):
        frames = F.interpolate(
            frames, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
        )
        frames = frames.clamp(0.0, 1.0)
    top = max(0, (new_h - target_size) // 2)
    left = max(0, (new_w - target_size) // 2)
    return frames[:, top : top + min(new_h, target_size), left : left + min(new_w, target_size)]


def predict_world_points(
    model: VGGT, frames_uint8: np.ndarray, target_size: int = 518
) -> tuple[np.ndarray, np.ndarray]:
    """World points and their confidence for a monocular clip (the VGGT frame-selection route).

    Args:
        model: a VGGT built with the "point" head.
        frames_uint8: [T, H, W, 3] uint8 RGB frames of one scene.
        target_size: longer image side fed to VGGT (518 as upstream; use less to save time/memory).

    Returns:
        (world_points [T, h, w, 3] float32, conf [T, h, w] float32) at the resized resolution h x w
        (multiples of the patch size); points share one (normalised, non-metric) world frame.
    """
    if model.point_head is None:
        raise ValueError("predict_world_points needs a VGGT loaded with the 'point' head")
    frames_uint8 = np.asarray(frames_uint8)
    if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3 or frames_uint8.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames_uint8.dtype} {frames_uint8.shape}")
    if frames_uint8.shape[0] == 0:
        raise ValueError("no frames given")
    patch_size = model.config.aggregator.patch_size
    if target_size < patch_size:
        raise ValueError(f"target_size {target_size} is smaller than the patch size {patch_size}")
    target_size -= target_size % patch_size
    images = resize_frames_for_vggt(frames_uint8, target_size, patch_size)
    parameter = next(model.parameters())
    images = images.to(device=parameter.device, dtype=parameter.dtype)
    with torch.inference_mode():
        predictions = model(images[None])
    points = predictions["world_points"][0].float().cpu().numpy()
    conf = predictions["world_points_conf"][0].float().cpu().numpy()
    return points, conf
