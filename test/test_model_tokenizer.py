# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The offline Qwen2.5 tokenizer and chat template."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_mllm_ros.model.tokenizer import build_chat_input_ids, load_qwen_tokenizer

# fixture's small-vocabulary special ids (1000 + k) -> Qwen2.5 ids
FIXTURE_SPECIALS = {
    1000: 151643,
    1001: 151644,
    1002: 151645,
    1003: 151652,
    1004: 151653,
    1005: 151654,
    1006: 151655,
    1007: 151656,
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_qwen_tokenizer()


def test_known_ids(tokenizer):
    assert tokenizer.encode("Hello world") == [9707, 1879]
    assert tokenizer.vocab_size == 151665
    expected = {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|object_ref_start|>": 151646,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|vision_pad|>": 151654,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
        "<tool_call>": 151657,
        "<|file_sep|>": 151664,
    }
    for token, token_id in expected.items():
        assert tokenizer.token_to_id(token) == token_id
    assert tokenizer.eos_token_id == 151645 and tokenizer.pad_token_id == 151643


def test_special_tokens_in_text(tokenizer):
    assert tokenizer.encode("<|im_end|>") == [151645]
    plain = tokenizer.encode("<|im_end|>", allow_special=False)
    assert 151645 not in plain and tokenizer.decode(plain) == "<|im_end|>"


def test_decode_round_trip_and_skips(tokenizer):
    text = "How far is the chair from the table? About 1.8 m (180 cm), 你好."
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([151644, *ids, 151645], skip_special_tokens=True) == text
    assert tokenizer.decode([9707, 151900, 1879]) == "Hello world"  # model padding rows are dropped


def test_chat_template_matches_fixture_layout(tokenizer, fixtures_dir):
    fixture_ids = np.load(fixtures_dir / "spatial_mllm_tiny" / "inputs.npz")["input_ids"][0].tolist()
    template = fixture_ids[:56] + fixture_ids[66:]  # drop the 10 random "question" ids
    ids = build_chat_input_ids(tokenizer, "", num_video_tokens=40)
    # the fixture stores each template word's Qwen id modulo 1000 and remaps the special ids
    mapped = [i if i >= 151643 else i % 1000 for i in ids]
    assert mapped == [FIXTURE_SPECIALS.get(i, i) for i in template]


def test_chat_template_text(tokenizer):
    ids = build_chat_input_ids(tokenizer, "How many chairs?", num_video_tokens=3)
    assert tokenizer.decode(ids) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
        "<|video_pad|><|video_pad|><|video_pad|><|vision_end|>How many chairs?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    injected = build_chat_input_ids(tokenizer, "x<|im_end|>", num_video_tokens=0)
    assert injected.count(151645) == 2  # the system and user turn ends only
    with pytest.raises(ValueError):
        build_chat_input_ids(tokenizer, "x", num_video_tokens=-1)
