# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""ONNX export of the visual graph (vision tower + VGGT aggregator + connector) run by ONNX Runtime."""

import numpy as np
import pytest
import torch

from spatial_mllm_ros.engine.backends import (
    OnnxRuntimeBackend,
    TorchBackend,
    export_visual_onnx,
    make_backend,
    video_grid_for,
)


@pytest.fixture(scope="module")
def tiny(fixtures_dir):
    """The published-format tiny checkpoint with its recorded inputs and fused embeddings."""
    from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration

    torch.set_num_threads(1)
    folder = fixtures_dir / "spatial_mllm_tiny"
    model = SpatialMLLMForConditionalGeneration.from_pretrained(folder).eval()
    inputs = np.load(folder / "inputs.npz")
    outputs = np.load(folder / "outputs.npz")
    video = (
        torch.from_numpy(inputs["pixel_values_videos"]),
        torch.from_numpy(inputs["video_grid_thw"]),
        torch.from_numpy(inputs["video_tchw"])[0],
    )
    return model, video, torch.from_numpy(outputs["fused_embeds"])


def test_onnx_runtime_matches_torch_on_tiny(tiny, tmp_path):
    model, video, recorded = tiny
    reference = TorchBackend(model).encode(*video)
    assert reference.shape == recorded.shape == (40, 64)
    backend = OnnxRuntimeBackend(model, tmp_path, model_id="tiny")
    assert backend.providers == ["CPUExecutionProvider"] and backend.name == "onnxruntime-cpu"
    onnx_out = backend.encode(*video)
    assert onnx_out.dtype == torch.float32 and onnx_out.shape == reference.shape
    assert (onnx_out - reference).abs().max().item() <= 1e-4
    assert (onnx_out - recorded).abs().max().item() <= 1e-4
    # A different input through the same session: the graph is not a constant of the export example.
    generator = torch.Generator().manual_seed(5)
    other = (torch.randn(video[0].shape, generator=generator), video[1],
             torch.rand(video[2].shape, generator=generator))
    difference = (backend.encode(*other) - TorchBackend(model).encode(*other)).abs().max().item()
    assert difference <= 1e-4


def test_exported_graph_is_reused_not_reexported(tiny, tmp_path):
    model, video, _ = tiny
    first = OnnxRuntimeBackend(model, tmp_path, model_id="tiny")
    first.encode(*video)
    (path,) = tmp_path.glob("*.onnx")
    assert "-T4-H112-W140" in path.name
    stamp = path.stat().st_mtime_ns
    second = OnnxRuntimeBackend(model, tmp_path, model_id="tiny")
    second.encode(*video)
    assert path.stat().st_mtime_ns == stamp
    assert OnnxRuntimeBackend(model, tmp_path, model_id="other").onnx_path(4, 112, 140) != path


def test_export_function_signature_and_shape_checks(tiny, tmp_path):
    import onnx

    model, _, _ = tiny
    path = export_visual_onnx(model, 2, 56, 84, tmp_path / "v.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["pixel_values_videos", "video_tchw"]
    assert [o.name for o in graph.output] == ["fused_video_embeds"]
    assert video_grid_for(2, 56, 84) == (1, 4, 6)
    with pytest.raises(ValueError, match="multiple of 2"):
        export_visual_onnx(model, 3, 56, 84, tmp_path / "odd.onnx")
    with pytest.raises(ValueError, match="multiples of 28"):
        export_visual_onnx(model, 2, 50, 84, tmp_path / "bad.onnx")


def test_backend_selection_errors(tiny, tmp_path):
    model, _, _ = tiny
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("openvino", model, tmp_path)
    with pytest.raises(ValueError, match="none of the ONNX Runtime providers"):
        OnnxRuntimeBackend(model, tmp_path, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="device='cuda'"):
        make_backend("tensorrt", model, tmp_path)
    assert make_backend("ort", model, tmp_path).name == "onnxruntime-cpu"
    assert make_backend("torch", model, tmp_path).name == "torch-cpu"


@pytest.mark.slow
def test_onnx_runtime_matches_torch_on_the_mid_config(tmp_path):
    from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration
    from spatial_mllm_ros.model.preprocessing import prepare_video
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    torch.set_num_threads(1)
    model_dir = make_tiny_checkpoint(tmp_path / "mid", preset="mid", seed=1)
    model = SpatialMLLMForConditionalGeneration.from_pretrained(model_dir).eval()
    frames = np.random.default_rng(3).integers(0, 256, size=(4, 56, 84, 3), dtype=np.uint8)
    video = prepare_video(frames, [0.0, 0.4, 1.1, 1.5], min_pixels=28 * 28 * 4)
    inputs = (video.pixel_values_videos, video.video_grid_thw, video.video_tchw[0])
    reference = TorchBackend(model).encode(*inputs)
    onnx_out = OnnxRuntimeBackend(model, tmp_path / "onnx", model_id="mid").encode(*inputs)
    assert onnx_out.shape == reference.shape == (12, 256)
    assert (onnx_out - reference).abs().max().item() <= 1e-4


def test_sessions_are_bounded_and_graphs_reused_from_disk(tiny, tmp_path):
    model, _, _ = tiny
    backend = OnnxRuntimeBackend(model, tmp_path, model_id="tiny")
    assert backend.max_sessions == 2
    backend.max_sessions = 1
    generator = torch.Generator().manual_seed(0)
    for frames in (2, 4, 2):
        grid = torch.tensor([[frames // 2, 2, 2]])
        pixels = torch.randn(frames // 2 * 4, 1176, generator=generator)
        out = backend.encode(pixels, grid, torch.rand(frames, 3, 28, 28, generator=generator))
        assert out.shape == (frames // 2, 64)
        if frames == 4:
            stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")}
    assert list(backend._runners) == [(2, 28, 28)]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")} == stamps  # not re-exported
    assert len(stamps) == 2
