# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Loading and saving Spatial-MLLM checkpoints in the published on-disk format.

Published checkpoints (``Diankun/Spatial-MLLM-v1.1-Instruct-*``, saved with transformers 4.51) name their
weights ``visual.*``, ``model.*`` (the LLM), ``lm_head.*`` (absent when tied),
``spatial_encoder.vggt_model.*`` and ``connector.*``; transformers 5 moved the first two to
``model.visual.*`` and ``model.language_model.*``. The loader maps the names and enforces:

* safetensors only (one ``model.safetensors`` or shards listed by ``model.safetensors.index.json``);
  a directory holding only pickle-based files (``.bin``/``.pt``/...) is refused, nothing is unpickled,
  and ``trust_remote_code`` does not exist here;
* memory: the model is built with its parameters on the meta device, then every tensor is read from the
  file straight into its own buffer (plain ``readinto``, no mmap, so the page cache does not count in
  the process's RSS) and converted to the requested dtype one tensor at a time. Peak memory is the
  model in its final dtype plus one tensor; no float32 copy of a bf16 model ever exists;
* the VGGT camera/depth/point/track heads stored in the checkpoint are not read at all unless
  ``load_spatial_heads=True`` (then camera/depth/point are built; the track head is never used);
* a checkpoint that does not match the config raises ``ValueError`` naming the missing, unexpected
  and wrong-shape keys.

The safetensors header is parsed here (8-byte little-endian length, JSON table of dtype/shape/offsets)
so each tensor can be read with one ``readinto``; the writer streams tensors the same way.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .configuration_spatial_mllm import SpatialMLLMConfig

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_TO_SAFETENSORS = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
VGGT_PREFIX = "spatial_encoder.vggt_model."
USED_HEADS = ("camera_head", "depth_head", "point_head")
ALL_HEADS = (*USED_HEADS, "track_head")
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_LISTED_KEYS = 10
_META_LOCK = threading.Lock()  # one parameters_on_meta() patch of nn.Module at a time


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in a safetensors file (absolute byte offsets)."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


# --------------------------------------------------------------------------- dtype and key names
def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Torch dtype or a name ("float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16") -> floating dtype."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPE_NAMES:
        resolved = DTYPE_NAMES[dtype.lower().removeprefix("torch.")]
    else:
        raise ValueError(f"unsupported dtype {dtype!r}: use float32, bfloat16 or float16")
    if resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {resolved}: use float32, bfloat16 or float16")
    return resolved


def published_to_model_key(key: str) -> str:
    """transformers-4.51 checkpoint name -> this model's (transformers 5) parameter name."""
    if key.startswith(("model.visual.", "model.language_model.")):
        return key  # already in the transformers 5 layout
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model."):
        return "model.language_model." + key.removeprefix("model.")
    return key  # lm_head.*, spatial_encoder.*, connector.*


def model_to_published_key(key: str) -> str:
    """Our (transformers 5) parameter name -> the published (transformers 4.51) checkpoint name."""
    if key.startswith("model.visual."):
        return key.removeprefix("model.")
    if key.startswith("model.language_model."):
        return "model." + key.removeprefix("model.language_model.")
    return key


def _vggt_head(key: str) -> str | None:
    """Name of the VGGT head a published key belongs to, or None."""
    if not key.startswith(VGGT_PREFIX):
        return None
    head = key.removeprefix(VGGT_PREFIX).split(".", 1)[0]
    return head if head in ALL_HEADS else None


# --------------------------------------------------------------------------- safetensors reading
def read_safetensors_header(path: str | Path) -> dict[str, TensorEntry]:
    """Parse a safetensors file's header: name -> TensorEntry. ValueError on a malformed file."""
    path = Path(path)
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
            raise ValueError(f"{path}: not a safetensors file (header length {header_len} is impossible)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: corrupt safetensors header ({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    data_start = 8 + header_len
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{path}: tensor {name!r} has an unsupported or malformed header entry {info!r}"
            ) from None
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if end - begin != nbytes or begin < 0 or data_start + end > file_size:
            raise ValueError(
                f"{path}: tensor {name!r} ({info['dtype']} {list(shape)}) has data offsets "
                f"{begin}..{end} that do not fit its size or the file (truncated download?)"
            )
        entries[name] = TensorEntry(path, dtype, shape, data_start + begin, data_start + end)
    return entries


def read_tensor(handle: Any, entry: TensorEntry) -> Tensor:
    """Read one tensor with ``readinto`` into a fresh CPU tensor of the file's dtype."""
    if sys.byteorder != "little":
        raise RuntimeError("safetensors data is little-endian; big-endian hosts are not supported")
    tensor = torch.empty(entry.shape, dtype=entry.dtype)
    view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy()) if tensor.numel() else memoryview(b"")
    handle.seek(entry.start)
    done = 0
    while done < len(view):
        count = handle.readinto(view[done:])
        if not count:
            raise ValueError(f"{entry.path}: unexpected end of file while reading a tensor (truncated file?)")
        done += count
    return tensor


def checkpoint_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (index, single file, or all *.safetensors)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"checkpoint directory {str(model_dir)!r} does not exist (give a local directory)")
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{index_path}: not a valid safetensors index (no weight_map)") from None
        names = sorted(set(weight_map.values()))
        files = []
        for name in names:
            candidate = (model_dir / name).resolve()
            if candidate.parent != model_dir.resolve() or not name.endswith(".safetensors"):
                raise ValueError(
                    f"{index_path}: shard {name!r} must be a .safetensors file inside the directory"
                )
            if not candidate.is_file():
                raise ValueError(f"{index_path}: shard {name!r} is missing (incomplete download?)")
            files.append(candidate)
        return files
    if (model_dir / SINGLE_FILE).is_file():
        return [model_dir / SINGLE_FILE]
    found = sorted(model_dir.glob("*.safetensors"))
    if found:
        return found
    pickled = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ValueError(
            f"{model_dir} holds only pickle-based weight files ({', '.join(pickled)}); they can run code "
            "when loaded and are refused. Use a safetensors checkpoint (model.safetensors or a sharded "
            "model.safetensors.index.json)."
        )
    raise ValueError(f"{model_dir} has no weights (expected {SINGLE_FILE} or {INDEX_FILE})")


def index_checkpoint(model_dir: str | Path) -> dict[str, TensorEntry]:
    """Every tensor of a checkpoint directory: published name -> TensorEntry."""
    entries: dict[str, TensorEntry] = {}
    for path in checkpoint_files(model_dir):
        for name, entry in read_safetensors_header(path).items():
            if name in entries:
                raise ValueError(f"tensor {name!r} is stored twice ({entries[name].path.name}, {path.name})")
            entries[name] = entry
    return entries


# --------------------------------------------------------------------------- config
def load_config(model_dir: str | Path, attn_implementation: str = "sdpa") -> SpatialMLLMConfig:
    """Read and validate ``config.json`` (model_type must be "spatial-mllm")."""
    if not Path(model_dir).is_dir():
        raise ValueError(f"checkpoint directory {str(model_dir)!r} does not exist (give a local directory)")
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{model_dir} has no config.json: not a Spatial-MLLM checkpoint directory")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    model_type = data.get("model_type")
    if model_type != SpatialMLLMConfig.model_type:
        raise ValueError(
            f"{path}: model_type is {model_type!r}, expected {SpatialMLLMConfig.model_type!r} (a "
            "Spatial-MLLM checkpoint such as Diankun/Spatial-MLLM-v1.1-Instruct-135K)"
        )
    for required in ("spatial_config", "vision_config"):
        if not isinstance(data.get(required), dict):
            raise ValueError(f"{path}: {required} is missing or not an object")
    try:
        config = SpatialMLLMConfig(**data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: invalid Spatial-MLLM config: {error}") from None
    config._attn_implementation = attn_implementation
    return config


# --------------------------------------------------------------------------- model construction
@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create module parameters on the meta device; buffers stay real.

    Like accelerate's ``init_empty_weights(include_buffers=False)``: a model skeleton costs no memory, and
    the non-persistent buffers (rotary frequencies) are computed as usual. ``nn.Module.register_parameter``
    is wrapped for the duration; only the calling thread is affected (other threads building modules at
    the same time get real parameters), and such contexts are serialised by a lock.
    """
    with _META_LOCK:
        original = nn.Module.register_parameter
        owner = threading.get_ident()

        def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
            original(module, name, param)
            if param is not None and param.device.type != "meta" and threading.get_ident() == owner:
                module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

        nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
        try:
            yield
        finally:
            nn.Module.register_parameter = original  # type: ignore[method-assign]


def _set_tensor(model: nn.Module, key: str, value: Tensor) -> None:
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[name] = value


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > MAX_LISTED_KEYS else "")


def _check_keys(model_dir: Path, expected: dict[str, torch.Size], found: dict[str, TensorEntry]) -> None:
    missing = expected.keys() - found.keys()
    unexpected = found.keys() - expected.keys()
    wrong_shape = [
        f"{model_to_published_key(k)} (checkpoint {list(found[k].shape)}, model {list(expected[k])})"
        for k in sorted(expected.keys() & found.keys())
        if tuple(found[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + _listing(model_to_published_key(k) for k in missing))
    if unexpected:
        problems.append("unexpected keys: " + _listing(model_to_published_key(k) for k in unexpected))
    if wrong_shape:
        problems.append("wrong shapes: " + _listing(wrong_shape))
    if problems:
        raise ValueError(f"checkpoint {model_dir} does not match its config.json; " + "; ".join(problems))


def load_spatial_mllm(
    model_dir: str | Path,
    *,
    model_class: Callable[..., nn.Module],
    dtype: torch.dtype | str = torch.float32,
    load_spatial_heads: bool = False,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """Load a local Spatial-MLLM checkpoint directory (see the module docstring for the rules).

    ``model_class`` is the class to build (``SpatialMLLMForConditionalGeneration``, whose
    ``from_pretrained`` calls this function): this module never imports the model, so the two
    modules import one way only.

    Returns the model in eval mode on ``device`` with every floating-point parameter in ``dtype``
    ("auto": the config's ``torch_dtype``; non-persistent rotary buffers stay float32) and
    ``generation_config`` from ``generation_config.json`` when present. Raises ValueError with the reason
    when the directory is not a usable checkpoint.
    """
    from transformers import GenerationConfig

    model_dir = Path(model_dir)
    config = load_config(model_dir, attn_implementation)
    if dtype == "auto":  # the dtype the checkpoint says it was saved in
        dtype = config.dtype if isinstance(config.dtype, torch.dtype) else torch.float32
    target_dtype = resolve_dtype(dtype)
    device = torch.device(device)
    entries = index_checkpoint(model_dir)

    with parameters_on_meta():
        model = model_class(config, load_spatial_heads=load_spatial_heads)
    tied = bool(config.tie_word_embeddings)
    expected = {k: v.shape for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    found: dict[str, TensorEntry] = {}
    for name, entry in entries.items():
        head = _vggt_head(name)
        if head is not None and not (load_spatial_heads and head in USED_HEADS):
            continue  # unused VGGT head: never read
        if tied and name == "lm_head.weight":
            continue  # tied to the input embeddings
        found[published_to_model_key(name)] = entry
    _check_keys(model_dir, expected, found)

    order = sorted(found.items(), key=lambda item: (str(item[1].path), item[1].start))
    handle = None
    current_path = None
    try:
        for key, entry in order:
            if entry.path != current_path:
                if handle is not None:
                    handle.close()
                handle = open(entry.path, "rb", buffering=0)  # noqa: SIM115 (closed below)
                current_path = entry.path
            tensor = read_tensor(handle, entry)
            wanted = target_dtype if tensor.is_floating_point() else tensor.dtype
            _set_tensor(model, key, tensor.to(device=device, dtype=wanted))
            del tensor
    finally:
        if handle is not None:
            handle.close()
    if tied:
        model.lm_head.weight = model.get_input_embeddings().weight
    model.to(device)
    model.eval()
    if (model_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(model_dir)
    return model


# --------------------------------------------------------------------------- writing
def write_safetensors(
    path: str | Path,
    specs: list[tuple[str, torch.dtype, tuple[int, ...]]],
    produce: Callable[[str], Tensor],
    metadata: dict[str, str] | None = None,
) -> int:
    """Write a safetensors file tensor by tensor (``produce(name)`` is called once per spec, in order).

    Written atomically (temporary file + rename). Returns the file size in bytes.
    """
    path = Path(path)
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name, dtype, shape in specs:
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {
            "dtype": DTYPE_TO_SAFETENSORS[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for name, dtype, shape in specs:
            tensor = produce(name).detach().to("cpu", dtype).contiguous()
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"tensor {name!r} has shape {list(tensor.shape)}, declared {list(shape)}")
            if tensor.numel():
                handle.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    os.replace(tmp, path)
    return path.stat().st_size


def save_published_weights(
    tensors: dict[str, Tensor] | nn.Module,
    out_dir: str | Path,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int | None = None,
    tie_word_embeddings: bool = True,
) -> list[Path]:
    """Write a model's weights with the published (4.51) names: one file or shards + index.

    ``tensors`` is a model or a state dict in this project's (transformers 5) names; floating tensors are
    cast to ``dtype`` when given. With ``tie_word_embeddings`` the ``lm_head.weight`` is left out, as
    ``save_pretrained`` does.
    """
    state = tensors.state_dict() if isinstance(tensors, nn.Module) else dict(tensors)
    if tie_word_embeddings:
        state.pop("lm_head.weight", None)
    named = {model_to_published_key(k): v for k, v in state.items()}

    def stored_dtype(tensor: Tensor) -> torch.dtype:
        return dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype

    specs = [(name, stored_dtype(t), tuple(t.shape)) for name, t in sorted(named.items())]
    return write_sharded(out_dir, specs, lambda name: named[name], max_shard_bytes)


def write_sharded(
    out_dir: str | Path,
    specs: list[tuple[str, torch.dtype, tuple[int, ...]]],
    produce: Callable[[str], Tensor],
    max_shard_bytes: int | None = None,
) -> list[Path]:
    """Write ``specs`` as ``model.safetensors`` or as shards + ``model.safetensors.index.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def size(spec: tuple[str, torch.dtype, tuple[int, ...]]) -> int:
        return math.prod(spec[2]) * torch.empty((), dtype=spec[1]).element_size()

    shards: list[list[tuple[str, torch.dtype, tuple[int, ...]]]] = [[]]
    shard_bytes = 0
    for spec in specs:
        if max_shard_bytes and shards[-1] and shard_bytes + size(spec) > max_shard_bytes:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(spec)
        shard_bytes += size(spec)
    if len(shards) == 1:
        write_safetensors(out_dir / SINGLE_FILE, shards[0], produce)
        return [out_dir / SINGLE_FILE]
    paths = []
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(out_dir / name, shard, produce)
        paths.append(out_dir / name)
        weight_map.update({spec[0]: name for spec in shard})
    index = {"metadata": {"total_size": sum(size(s) for s in specs)}, "weight_map": weight_map}
    tmp = out_dir / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_dir / INDEX_FILE)
    return paths
