# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The one parameter table: specs, checks, the engine/buffer factories and the robot profiles."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from spatial_mllm_ros.core.selection import SELECTORS
from spatial_mllm_ros.engine.parameters import (
    BACKEND_NAMES,
    BUFFER_PARAMETERS,
    ENGINE_PARAMETERS,
    QUEUE_PARAMETERS,
    EngineConfigError,
    ParameterError,
    UnknownProfileError,
    build_engine,
    build_frame_buffer,
    engine_kwargs,
    input_size,
    load_profile,
    parameter_table,
    profile_names,
    profile_path,
    resolve_values,
)


def test_every_spec_is_complete_and_its_default_is_valid():
    table = parameter_table()
    assert len(table) == len(ENGINE_PARAMETERS) + len(BUFFER_PARAMETERS) + len(QUEUE_PARAMETERS)
    for spec in table.values():
        assert spec.description.endswith(".") and len(spec.description) > 15, spec.name
        assert spec.coerce(spec.default) == spec.default
        if spec.type_name == "integer":
            assert spec.integer_range is not None, spec.name
        if spec.type_name == "double":
            assert spec.float_range is not None, spec.name
    assert table["backend"].choices == BACKEND_NAMES == ("torch", "onnxruntime", "tensorrt")
    assert table["selector"].choices == tuple(SELECTORS)
    assert table["max_frames"].read_only and not table["request_timeout_s"].read_only


def test_values_are_checked_by_type_range_and_choice():
    assert resolve_values({"max_frames": 8, "feature_cache_megabytes": 64})["feature_cache_megabytes"] == 64.0
    with pytest.raises(ParameterError) as error:
        resolve_values({"backend": "cuda", "max_frames": 0, "warmup": "yes", "max_new_tokens": True})
    message = str(error.value)
    for part in ("backend='cuda' is not one of torch", "max_frames=0 is outside 1..256",
                 "warmup must be of type bool", "max_new_tokens must be of type integer"):
        assert part in message


def test_engine_kwargs_keep_every_setting():
    kwargs = engine_kwargs({"model_path": "/m", "max_pixels": 200704, "min_pixels": 0,
                            "feature_cache_megabytes": 256.0, "max_frames": 8, "other.parameter": 1})
    assert kwargs["max_pixels"] == 200704 and kwargs["min_pixels"] is None
    assert kwargs["cache_bytes"] == 256 * 1024 * 1024 and kwargs["max_frames"] == 8
    assert kwargs["model_dir"] == "/m"
    assert input_size({"input_width": 640, "input_height": 480}) == (480, 640)
    assert input_size({"input_width": 640}) is None


def test_build_engine_without_a_model_and_with_a_bad_path(tmp_path):
    engine = build_engine({"model_path": "", "max_frames": 4, "feature_cache_megabytes": 1.0,
                           "max_pixels": 28 * 28 * 64})
    assert not engine.model_loaded
    assert (engine.max_frames, engine.cache.max_bytes, engine.max_pixels) == (4, 1024 * 1024, 28 * 28 * 64)
    with pytest.raises(EngineConfigError, match=r"model_path='.*nowhere'.*config.json missing"):
        build_engine({"model_path": str(tmp_path / "nowhere")})


def test_build_frame_buffer_from_values():
    buffer = build_frame_buffer({"buffer.max_frames": 7, "buffer.max_megabytes": 2,
                                 "buffer.reset_jump_s": 3.0, "buffer.reset_confirmations": 5})
    assert (buffer.max_frames, buffer.max_bytes, buffer.reset_jump) == (7, 2 * 1024 * 1024, 3.0)
    assert buffer.reset_confirmations == 5


def test_profiles_are_found_and_an_unknown_one_names_the_known():
    names = profile_names(REPO_ROOT / "config")
    assert {"cpu", "desktop_cuda", "jetson_orin"} <= set(names)
    assert profile_path("cpu", REPO_ROOT / "config") == REPO_ROOT / "config" / "cpu.yaml"
    for bad in ("jetson", "../config/cpu", "cpu.yaml", ""):
        with pytest.raises(UnknownProfileError, match="known profiles: cpu, desktop_cuda, jetson_orin"):
            profile_path(bad, REPO_ROOT / "config")
    jetson = load_profile("jetson_orin", config_dir=REPO_ROOT / "config")
    assert (jetson["max_pixels"], jetson["buffer.max_frames"], jetson["backend"]) == (200704, 90, "tensorrt")
    kwargs = engine_kwargs(jetson)  # every engine value of a shipped profile passes the table's checks
    assert kwargs["max_pixels"] == 200704 and kwargs["cache_bytes"] == 256 * 1024 * 1024


@pytest.mark.parametrize("profile", ["cpu", "desktop_cuda", "jetson_orin"])
def test_every_shipped_profile_passes_the_table(profile):
    values = load_profile(profile, config_dir=REPO_ROOT / "config")
    table = parameter_table()
    checked = {name: value for name, value in values.items() if name in table}
    assert len(checked) >= 15
    resolve_values(checked, table.values())


def test_the_table_imports_without_torch():
    code = ("import sys; import spatial_mllm_ros.engine.parameters, spatial_mllm_ros.engine.requests, "
            "spatial_mllm_ros.engine.question_queue; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_choices_are_the_names_the_implementations_accept():
    import torch

    from spatial_mllm_ros.engine import backends
    from spatial_mllm_ros.model.loading import resolve_dtype

    assert backends.BACKEND_NAMES is BACKEND_NAMES
    table = parameter_table()
    resolved = {resolve_dtype(name) for name in table["dtype"].choices}
    assert resolved == {torch.float32, torch.bfloat16, torch.float16}
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        backends.make_backend("cuda", torch.nn.Linear(1, 1), ".")
