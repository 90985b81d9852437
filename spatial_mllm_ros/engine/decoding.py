# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
r"""Greedy decoding that reuses the language model's work on the shared system + video prefix.

In the Qwen2.5-VL chat template the video comes BEFORE the question:
``<|im_start|>system ... <|im_start|>user\n<|vision_start|><|video_pad|>*N<|vision_end|>{question}...``.
Every question about the same frames therefore starts with the same few hundred to few thousand
tokens, whose keys/values in the language model do not depend on the question (causal attention).
:class:`PrefixDecoder` runs that prefix once (:meth:`PrefixDecoder.prefill_prefix`) and then, for
any batch of questions, only the question tokens and the answer tokens
(:meth:`PrefixDecoder.generate`). With the visual features this is what the engine's feature cache
keeps, so a second question about the same frames skips both the encoders and the video prefill.

Positions are Spatial-MLLM's own 3D M-RoPE (``model.get_rope_index`` on the full sequence, real
frame timing through ``second_per_grid_ts``); decoding continues at the last position + 1 on all
three axes, as ``generate`` does. Question segments of a batch are left-padded *between* the
prefix and the question; the attention mask hides the padding. Greedy (argmax) decoding, stopping
per sequence at an end token, like ``generate(do_sample=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache


@dataclass
class PrefixState:
    """Keys/values of the shared prefix (one sequence), ready to be repeated for a batch."""

    ids: list[int]  # the prefix token ids
    kv: tuple[tuple[Tensor, Tensor], ...]  # per layer ([1, kv_heads, P, head_dim], same)

    @property
    def nbytes(self) -> int:
        """Bytes held by the keys/values."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)


def prefix_length(ids: Sequence[int], vision_end_id: int) -> int:
    """Length of the shared prefix: everything up to and including the last ``<|vision_end|>``."""
    for index in range(len(ids) - 1, -1, -1):
        if ids[index] == vision_end_id:
            return index + 1
    raise ValueError("the chat input has no <|vision_end|> token (no video in it)")


class TorchLanguageModel:
    """The language model in torch eager (the model's own forward on ``inputs_embeds``).

    The same call as :class:`~spatial_mllm_ros.engine.llm_onnx.OnnxLanguageModel`:
    ``(inputs_embeds, attention_mask, position_ids, past) -> (last logits, present)``; ``past`` /
    ``present`` here is transformers' ``DynamicCache`` (grown in place), built from plain per-layer
    (key, value) pairs by :meth:`from_pairs` and read back by :meth:`to_pairs`.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @staticmethod
    def from_pairs(pairs: Sequence[tuple[Tensor, Tensor]]) -> DynamicCache:
        """A cache holding ``pairs`` (one (key, value) per layer)."""
        return DynamicCache(ddp_cache_data=list(pairs))

    @staticmethod
    def to_pairs(cache: DynamicCache) -> tuple[tuple[Tensor, Tensor], ...]:
        """Per-layer (key, value) of a cache."""
        return tuple((layer.keys, layer.values) for layer in cache.layers)

    @torch.inference_mode()
    def __call__(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                 past: DynamicCache | None) -> tuple[Tensor, DynamicCache]:
        """(logits of the last position [B, vocab], the grown cache)."""
        cache = past if past is not None else DynamicCache()
        output = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            position_ids=position_ids, past_key_values=cache, use_cache=True,
                            logits_to_keep=1)
        return output.logits[:, -1], output.past_key_values


class PrefixDecoder:
    """Greedy batched decoding on top of a cached prefix (see the module docstring).

    ``language_model`` runs the decoder (torch by default, or the exported graph through ONNX
    Runtime / TensorRT, see :mod:`~spatial_mllm_ros.engine.llm_onnx`); the token embeddings and the
    fused video embeddings are put together here, in torch, so every backend gets ``inputs_embeds``.
    """

    def __init__(self, model: torch.nn.Module, eos_ids: Sequence[int], pad_id: int,
                 language_model: Any = None):
        self.model = model
        self.language_model = language_model if language_model is not None else TorchLanguageModel(model)
        self.eos_ids = sorted({int(i) for i in eos_ids})
        self.pad_id = int(pad_id)
        self.device = next(model.parameters()).device
        self.video_token_id = int(model.config.video_token_id)

    def _positions(self, ids: list[int], video_grid_thw: Tensor, second_per_grid_ts: Tensor) -> Tensor:
        """[3, len(ids)] M-RoPE positions of one unpadded sequence."""
        positions, _ = self.model.get_rope_index(
            torch.tensor([ids], device=self.device), video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts,
        )
        return positions[:, 0]

    def embed(self, input_ids: Tensor, fused_video_embeds: Tensor | None = None) -> Tensor:
        """Token embeddings, with ``fused_video_embeds`` over the ``<|video_pad|>`` rows when given."""
        embeds = self.model.get_input_embeddings()(input_ids)
        if fused_video_embeds is None:
            return embeds
        mask = (input_ids == self.video_token_id).unsqueeze(-1).expand_as(embeds)
        count = int(mask[..., 0].sum())
        if count != fused_video_embeds.shape[0]:
            raise ValueError(f"{count} <|video_pad|> tokens, {fused_video_embeds.shape[0]} fused video rows")
        return embeds.masked_scatter(mask, fused_video_embeds.to(embeds.device, embeds.dtype))

    @torch.inference_mode()
    def prefill_prefix(self, prefix_ids: list[int], fused_video_embeds: Tensor, video_grid_thw: Tensor,
                       second_per_grid_ts: Tensor) -> PrefixState:
        """Run the prefix once (the fused video embeddings replace its ``<|video_pad|>`` tokens)."""
        positions = self._positions(prefix_ids, video_grid_thw, second_per_grid_ts)
        input_ids = torch.tensor([prefix_ids], device=self.device)
        _, present = self.language_model(self.embed(input_ids, fused_video_embeds),
                                         torch.ones_like(input_ids), positions[:, None, :], None)
        return PrefixState(ids=list(prefix_ids), kv=tuple(self.language_model.to_pairs(present)))

    @torch.inference_mode()
    def generate(self, prefix: PrefixState, sequences: Sequence[list[int]], video_grid_thw: Tensor,
                 second_per_grid_ts: Tensor, max_new_tokens: int) -> list[tuple[list[int], list[float]]]:
        """Greedy answers for full chat sequences that all start with ``prefix.ids``.

        Returns per sequence (generated token ids up to and including the first end token,
        probability of each of them).
        """
        plen = len(prefix.ids)
        for ids in sequences:
            if ids[:plen] != prefix.ids or len(ids) <= plen:
                raise ValueError("every sequence must start with the cached prefix and continue after it")
        batch = len(sequences)
        segments = [ids[plen:] for ids in sequences]
        width = max(len(s) for s in segments)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        segment_mask = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.ones((3, batch, width), dtype=torch.long)
        next_position = torch.zeros(batch, dtype=torch.long)
        for row, (ids, segment) in enumerate(zip(sequences, segments, strict=True)):
            full = self._positions(ids, video_grid_thw, second_per_grid_ts).cpu()  # [3, L]
            input_ids[row, width - len(segment):] = torch.tensor(segment)
            segment_mask[row, width - len(segment):] = 1
            positions[:, row, width - len(segment):] = full[:, plen:]
            next_position[row] = int(full.max()) + 1
        attention_mask = torch.cat([torch.ones((batch, plen), dtype=torch.long), segment_mask], dim=1)
        cache = self.language_model.from_pairs([(k.repeat(batch, 1, 1, 1), v.repeat(batch, 1, 1, 1))
                                                for k, v in prefix.kv])
        attention_mask = attention_mask.to(self.device)
        next_position = next_position.to(self.device)
        eos = torch.tensor(self.eos_ids, device=self.device)
        logits, cache = self.language_model(self.embed(input_ids.to(self.device)), attention_mask,
                                            positions.to(self.device), cache)
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        tokens: list[Tensor] = []
        probabilities: list[Tensor] = []
        for step in range(max_new_tokens):
            probs = logits.float().softmax(-1)
            token = probs.argmax(-1)
            token = torch.where(finished, torch.full_like(token, self.pad_id), token)
            tokens.append(token)
            probabilities.append(probs.gather(-1, token[:, None])[:, 0])
            finished |= torch.isin(token, eos)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=1)
            step_positions = next_position.view(1, batch, 1).expand(3, batch, 1)
            next_position = next_position + 1
            logits, cache = self.language_model(self.embed(token[:, None]), attention_mask, step_positions,
                                                cache)
        token_rows = torch.stack(tokens, dim=1).cpu().tolist()
        prob_rows = torch.stack(probabilities, dim=1).cpu().tolist()
        results = []
        for token_row, prob_row in zip(token_rows, prob_rows, strict=True):
            kept, kept_probs = [], []
            for token, prob in zip(token_row, prob_row, strict=True):
                kept.append(token)
                kept_probs.append(prob)
                if token in self.eos_ids:
                    break
            results.append((kept, kept_probs))
        return results
