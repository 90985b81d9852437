# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""TensorRT engine cache: keys, stale-engine rebuilds (builder injected), real TensorRT where it exists."""

import importlib.util
import json

import pytest

from spatial_mllm_ros.engine import trt
from spatial_mllm_ros.engine.trt import (
    EngineCache,
    EngineKey,
    ShapeProfile,
    TensorRTUnavailableError,
    TrtEnvironment,
    make_engine_key,
)

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
ORIN = TrtEnvironment("Orin", (8, 7), "10.3.0")
PROFILE = ShapeProfile.fixed({"pixel_values_videos": (160, 1176), "video_tchw": (4, 3, 112, 140)})


class CountingBuilder:
    """Stands in for TensorRT: an 'engine' is bytes naming what it was built from."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, profile, precision):
        self.calls.append((onnx_path, profile, precision))
        text = f"engine #{len(self.calls)} {trt.onnx_sha256(onnx_path)} {profile.to_jsonable()} {precision}"
        return text.encode()


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "visual.onnx"
    path.write_bytes(b"onnx graph v1")
    return path


def test_key_changes_with_every_component(onnx_file):
    base = make_engine_key(onnx_file, PROFILE, "fp16", ORIN)
    onnx_v2 = onnx_file.with_name("other.onnx")
    onnx_v2.write_bytes(b"onnx graph v2")
    variants = [
        make_engine_key(onnx_file, PROFILE, "fp16", TrtEnvironment("Orin Nano", (8, 7), "10.3.0")),
        make_engine_key(onnx_file, PROFILE, "fp16", TrtEnvironment("Orin", (8, 6), "10.3.0")),
        make_engine_key(onnx_file, PROFILE, "fp16", TrtEnvironment("Orin", (8, 7), "10.4.0")),
        make_engine_key(onnx_v2, PROFILE, "fp16", ORIN),
        make_engine_key(onnx_file, ShapeProfile.fixed({"pixel_values_videos": (320, 1176),
                                                       "video_tchw": (8, 3, 112, 140)}), "fp16", ORIN),
        make_engine_key(onnx_file, PROFILE, "fp32", ORIN),
    ]
    digests = {base.digest(), *(v.digest() for v in variants)}
    assert len(digests) == 1 + len(variants)
    cache = EngineCache(onnx_file.parent / "engines")
    assert len({cache.engine_path(k) for k in [base, *variants]}) == 1 + len(variants)
    # Same inputs, same key (hashing is stable), and the JSON round trip is exact.
    assert make_engine_key(onnx_file, PROFILE, "fp16", ORIN) == base
    assert EngineKey.from_jsonable(json.loads(json.dumps(base.to_jsonable()))) == base


def test_external_onnx_data_is_part_of_the_hash(onnx_file):
    before = trt.onnx_sha256(onnx_file)
    data = onnx_file.with_name(onnx_file.name + ".data")
    data.write_bytes(b"weights 1")
    with_data = trt.onnx_sha256(onnx_file)
    data.write_bytes(b"weights 2")
    assert len({before, with_data, trt.onnx_sha256(onnx_file)}) == 3


def test_built_once_then_loaded(onnx_file):
    builder = CountingBuilder()
    cache = EngineCache(onnx_file.parent / "engines", builder=builder)
    key = make_engine_key(onnx_file, PROFILE, "fp16", ORIN)
    engine, path, built = cache.get_or_build(key, onnx_file)
    assert built and len(builder.calls) == 1 and path.read_bytes() == engine
    sidecar = json.loads(cache.sidecar_path(path).read_text())
    assert EngineKey.from_jsonable(sidecar["key"]) == key
    again, again_path, built_again = EngineCache(onnx_file.parent / "engines", builder=builder).get_or_build(
        key, onnx_file)
    assert not built_again and again == engine and again_path == path and len(builder.calls) == 1


@pytest.mark.parametrize("change", ["tensorrt_upgrade", "other_gpu", "onnx_reexported", "new_profile"])
def test_stale_engine_is_rebuilt_never_loaded(onnx_file, change):
    builder = CountingBuilder()
    cache = EngineCache(onnx_file.parent / "engines", builder=builder)
    old_key = make_engine_key(onnx_file, PROFILE, "fp16", ORIN)
    old_engine, old_path, _ = cache.get_or_build(old_key, onnx_file)
    env, profile = ORIN, PROFILE
    if change == "tensorrt_upgrade":
        env = TrtEnvironment("Orin", (8, 7), "10.7.0")
    elif change == "other_gpu":
        env = TrtEnvironment("NVIDIA GeForce RTX 4090", (8, 9), "10.3.0")
    elif change == "onnx_reexported":
        onnx_file.write_bytes(b"onnx graph v1 with new weights")
    else:
        profile = ShapeProfile.ranged({"pixel_values_videos": ((40, 1176), (160, 1176), (320, 1176)),
                                       "video_tchw": ((2, 3, 112, 140), (4, 3, 112, 140), (8, 3, 112, 140))})
    new_key = make_engine_key(onnx_file, profile, "fp16", env)
    engine, path, built = cache.get_or_build(new_key, onnx_file)
    assert built and len(builder.calls) == 2
    assert engine != old_engine and path != old_path
    assert not old_path.exists() and not cache.sidecar_path(old_path).exists()
    assert cache.stats.stale_removed == 1
    left = sorted(p.name for p in cache.cache_dir.iterdir())
    assert left == sorted([path.name, cache.sidecar_path(path).name])


def test_engine_with_foreign_sidecar_or_damaged_bytes_is_rebuilt(onnx_file):
    builder = CountingBuilder()
    cache = EngineCache(onnx_file.parent / "engines", builder=builder)
    key = make_engine_key(onnx_file, PROFILE, "fp16", ORIN)
    engine, path, _ = cache.get_or_build(key, onnx_file)
    # Someone copies an engine built on another GPU into this file name: its sidecar says so.
    sidecar = cache.sidecar_path(path)
    meta = json.loads(sidecar.read_text())
    meta["key"]["gpu_name"] = "Xavier"
    sidecar.write_text(json.dumps(meta))
    assert not cache.is_valid(key, path)
    assert cache.get_or_build(key, onnx_file)[2] and len(builder.calls) == 2
    # A truncated engine file (power loss while copying) fails its checksum.
    path.write_bytes(engine[:10])
    assert cache.get_or_build(key, onnx_file)[2] and len(builder.calls) == 3
    # A missing or unreadable sidecar also means rebuild.
    sidecar.write_text("{not json")
    assert cache.get_or_build(key, onnx_file)[2] and len(builder.calls) == 4
    sidecar.unlink()
    assert cache.get_or_build(key, onnx_file)[2] and len(builder.calls) == 5
    assert cache.get_or_build(key, onnx_file)[2] is False


def test_onnx_changed_after_keying_is_refused(onnx_file):
    cache = EngineCache(onnx_file.parent / "engines", builder=CountingBuilder())
    key = make_engine_key(onnx_file, PROFILE, "fp16", ORIN)
    onnx_file.write_bytes(b"changed underneath")
    with pytest.raises(ValueError, match="does not match"):
        cache.get_or_build(key, onnx_file)


def test_profile_and_key_validation(onnx_file):
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeProfile.ranged({"x": ((4, 3), (2, 3), (8, 3))})
    with pytest.raises(ValueError, match="rank"):
        ShapeProfile.ranged({"x": ((4,), (4, 3), (4, 3))})
    with pytest.raises(ValueError, match="precision"):
        make_engine_key(onnx_file, PROFILE, "int4", ORIN)
    with pytest.raises(ValueError, match="engine name"):
        EngineCache(onnx_file.parent).engine_path(make_engine_key(onnx_file, PROFILE, "fp16", ORIN), "a-b")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_gives_a_clear_error(onnx_file):
    with pytest.raises(TensorRTUnavailableError, match=r"TensorRT is not installed.*onnxruntime"):
        trt.require_tensorrt()
    with pytest.raises(TensorRTUnavailableError):
        make_engine_key(onnx_file, PROFILE)  # environment detection needs TensorRT
    cache = EngineCache(onnx_file.parent / "engines")  # default builder = real TensorRT
    with pytest.raises(TensorRTUnavailableError):
        cache.get_or_build(make_engine_key(onnx_file, PROFILE, "fp16", ORIN), onnx_file)


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT is not installed (not installable from PyPI here)")
def test_real_engine_build_load_and_run(tmp_path):
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")

    class Small(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x @ x.transpose(0, 1)) + 1.0

    onnx_path = tmp_path / "small.onnx"
    example = torch.randn(16, 8)
    torch.onnx.export(Small(), (example,), str(onnx_path), dynamo=False,
                      input_names=["x"], output_names=["y"])
    profile = ShapeProfile.fixed({"x": (16, 8)})
    cache = EngineCache(tmp_path / "engines")
    key = make_engine_key(onnx_path, profile, "fp32")
    engine, _, built = cache.get_or_build(key, onnx_path)
    assert built
    assert not EngineCache(tmp_path / "engines").get_or_build(key, onnx_path)[2]
    out = trt.TensorRTRunner(engine)({"x": example.cuda()})["y"].cpu()
    np.testing.assert_allclose(out.numpy(), Small()(example).numpy(), atol=1e-3)
