# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Spatial-MLLM (v1.1) on transformers 5's Qwen2.5-VL classes.

Why a subclass of ``Qwen2_5_VLForConditionalGeneration`` (and not composition): the published checkpoint
IS a Qwen2.5-VL model with two extra top-level modules (``spatial_encoder``, ``connector``). Subclassing
keeps the exact transformers 5 module tree (``model.visual``, ``model.language_model``, ``lm_head``), so
the vision tower, the decoder, weight tying, the KV cache and ``generate()`` are transformers' own code,
and the 4.51 -> 5.x checkpoint key mapping is a plain prefix rename. We override only what Spatial-MLLM
changes:

* ``forward`` builds the input embeddings itself: video embeddings from the vision tower PLUS the
  connector's projection of the last VGGT aggregator layer replace the ``<|video_pad|>`` embeddings
  (``get_fused_video_embeds``). A caller may pass ``fused_video_embeds=`` instead of pixels, which skips
  both encoders (the engine's visual-feature cache).
* ``get_rope_index`` is the transformers-4.51 algorithm the published model was trained with. transformers
  5 changed where text after a video resumes (``max(h, w)`` past the video start instead of the largest
  video position + 1, and positions from ``mm_token_type_ids``), which differs as soon as the temporal
  positions of a video outgrow its spatial extent (e.g. 16 frames), so we keep the 4.51 rule. Temporal
  positions are ``floor(group * second_per_grid_t * tokens_per_second)``; ``second_per_grid_ts`` carries
  the frames' real timing.
* generation: position ids are prepared once from the prompt (text row + 3 M-RoPE rows) and advanced by
  one per new token, which equals 4.51's ``cache_position + rope_deltas``; the video inputs are dropped
  after the first (prefill) step.

Loading the published checkpoints lives in :mod:`spatial_mllm_ros.model.loading` and is reached through
:meth:`SpatialMLLMForConditionalGeneration.from_pretrained`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import GenerationMixin, Qwen2_5_VLForConditionalGeneration

from .configuration_spatial_mllm import SpatialMLLMConfig
from .connector import MLPAddConnector, drop_special_tokens
from .loading import load_spatial_mllm
from .vggt import HEAD_NAMES, VGGT, VGGTConfig, vggt_config_from_spatial_config

# Generation kwargs that only the prefill step consumes (the KV cache holds their effect afterwards).
PREFILL_ONLY_INPUTS = (
    "pixel_values",
    "image_tchw",
    "pixel_values_videos",
    "video_tchw",
    "fused_video_embeds",
    "image_grid_thw",
    "video_grid_thw",
    "second_per_grid_ts",
)


class SpatialEncoder(nn.Module):
    """Holds ``vggt_model`` so parameter names are the published ``spatial_encoder.vggt_model.*``.

    Only the aggregator is built unless the camera/depth/point heads are asked for (they cost memory and
    Spatial-MLLM never runs them; the VGGT frame-selection route does).
    """

    def __init__(self, config: VGGTConfig, with_heads: bool = False) -> None:
        super().__init__()
        self.vggt_model = VGGT(config, heads=HEAD_NAMES if with_heads else ())

    def forward(self, images: Tensor, keep_layers: Collection[int] | None = None) -> tuple[list[Tensor], int]:
        """[B, S, 3, H, W] in 0..1 -> (per-layer [B, S, 5+P, 2C] or None if not kept, patch_start_idx)."""
        return self.vggt_model.aggregator(images, keep_layers=keep_layers)


class SpatialMLLMForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL + VGGT spatial encoder + MLP-add connector (see the module docstring)."""

    config_class = SpatialMLLMConfig
    config: SpatialMLLMConfig

    def __init__(self, config: SpatialMLLMConfig, load_spatial_heads: bool = False) -> None:
        super().__init__(config)
        vggt_config = vggt_config_from_spatial_config(config.spatial_config)
        self.spatial_encoder = SpatialEncoder(vggt_config, with_heads=load_spatial_heads)
        vision = config.vision_config
        self.connector = MLPAddConnector(
            spatial_dim=2 * vggt_config.aggregator.embed_dim,
            out_dim=config.text_config.hidden_size,
            spatial_merge_size=vision.spatial_merge_size,
            temporal_patch_size=vision.temporal_patch_size,
        )
        self.spatial_layer_index = int(config.connector_config["spatial_embeds_layer_idx"])
        self.rope_deltas: Tensor | None = None  # [B, 1], set by the prefill step
        self.post_init()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        model_dir: str | Path,
        *,
        dtype: torch.dtype | str = torch.float32,
        load_spatial_heads: bool = False,
        device: str | torch.device = "cpu",
        attn_implementation: str = "sdpa",
    ) -> SpatialMLLMForConditionalGeneration:
        """Load a LOCAL checkpoint directory in the published format (safetensors only).

        See :func:`spatial_mllm_ros.model.loading.load_spatial_mllm` for the rules and errors.
        """
        return load_spatial_mllm(
            model_dir,
            dtype=dtype,
            load_spatial_heads=load_spatial_heads,
            device=device,
            attn_implementation=attn_implementation,
            model_class=cls,
        )

    # ------------------------------------------------------------------ visual features
    def get_video_embeds(self, pixel_values_videos: Tensor, video_grid_thw: Tensor) -> Tensor:
        """Vision tower only: [N_patches, 1176] -> [N_video_tokens, hidden] (merged-token order)."""
        outputs = self.model.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)
        return torch.cat(outputs.pooler_output, dim=0)

    def get_spatial_embeds(self, video_tchw: Sequence[Tensor], video_grid_thw: Tensor) -> Tensor:
        """VGGT last(-selected) layer -> connector, per video: -> [N_video_tokens, hidden]."""
        if len(video_tchw) != len(video_grid_thw):
            raise ValueError(f"got {len(video_tchw)} video_tchw tensors for {len(video_grid_thw)} videos")
        weight = self.connector.mlp[0].weight
        projected = []
        for frames, grid_thw in zip(video_tchw, video_grid_thw.tolist(), strict=True):
            if frames.ndim != 4 or frames.shape[1] != 3:
                raise ValueError(f"video_tchw entries must be [T, 3, H, W], got {tuple(frames.shape)}")
            images = frames.to(device=weight.device, dtype=weight.dtype)[None]  # [1, T, 3, H, W]
            layers, patch_start_idx = self.spatial_encoder(images, keep_layers=(self.spatial_layer_index,))
            features = layers[self.spatial_layer_index][0]  # [T, 5+P, 2C]
            del layers
            projected.append(self.connector(drop_special_tokens(features, patch_start_idx), grid_thw))
        return torch.cat(projected, dim=0)

    def get_fused_video_embeds(
        self, pixel_values_videos: Tensor, video_grid_thw: Tensor, video_tchw: Sequence[Tensor]
    ) -> Tensor:
        """Video embeddings + connector(VGGT features): what replaces the ``<|video_pad|>`` tokens.

        ``pixel_values_videos`` [N_patches, 1176], ``video_grid_thw`` [V, 3], ``video_tchw`` one
        [T, 3, H, W] tensor in 0..1 per video (same frames and resolution). Returns [N_video_tokens, hidden].
        """
        video_embeds = self.get_video_embeds(pixel_values_videos, video_grid_thw)
        spatial_embeds = self.get_spatial_embeds(video_tchw, video_grid_thw)
        return video_embeds + spatial_embeds.to(video_embeds.dtype)

    def get_fused_image_embeds(
        self, pixel_values: Tensor, image_grid_thw: Tensor, image_tchw: Sequence[Tensor]
    ) -> Tensor:
        """Images as the published model treats them: vision tower + connector(VGGT), like a 2-frame video.

        ``image_tchw``: one [2*grid_t, 3, H, W] tensor in 0..1 per image (the frame repeated, as Qwen's
        processor repeats it for the temporal patch). Returns [N_image_tokens, hidden].
        """
        outputs = self.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        image_embeds = torch.cat(outputs.pooler_output, dim=0)
        spatial_embeds = self.get_spatial_embeds(image_tchw, image_grid_thw)
        return image_embeds + spatial_embeds.to(image_embeds.dtype)

    # ------------------------------------------------------------------ positions
    def get_rope_index(
        self,
        input_ids: Tensor,
        image_grid_thw: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        second_per_grid_ts: Tensor | Sequence[float] | None = None,
        attention_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """3D M-RoPE positions as transformers 4.51 computes them: ([3, B, L] positions, [B, 1] deltas)."""
        vision = self.config.vision_config
        merge = vision.spatial_merge_size
        image_token_id = self.config.image_token_id
        video_token_id = self.config.video_token_id
        vision_start_token_id = self.config.vision_start_token_id
        if image_grid_thw is None and video_grid_thw is None:
            return _text_positions(input_ids, attention_mask)
        if second_per_grid_ts is not None:
            # positions are built on the CPU (small integer work) and moved to input_ids' device at the end
            second_per_grid_ts = torch.as_tensor(second_per_grid_ts).detach()
            second_per_grid_ts = second_per_grid_ts.to("cpu", torch.float32).reshape(-1)

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        position_ids = torch.ones(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
        deltas = []
        image_index = video_index = 0
        for row, sequence in enumerate(input_ids):
            sequence = sequence[attention_mask[row].to(sequence.device) == 1]
            starts = torch.argwhere(sequence == vision_start_token_id).squeeze(1)
            following = sequence[starts[starts + 1 < len(sequence)] + 1]  # token after each <|vision_start|>
            remain_images = int((following == image_token_id).sum())
            remain_videos = int((following == video_token_id).sum())
            tokens = sequence.tolist()
            pieces: list[Tensor] = []
            start = 0
            for _ in range(remain_images + remain_videos):
                end_image = _index_or(tokens, image_token_id, start) if remain_images > 0 else len(tokens) + 1
                end_video = _index_or(tokens, video_token_id, start) if remain_videos > 0 else len(tokens) + 1
                if end_image < end_video:
                    t, h, w = (int(v) for v in image_grid_thw[image_index])
                    second_per_grid = torch.tensor(0.0)
                    image_index += 1
                    remain_images -= 1
                    end = end_image
                else:
                    t, h, w = (int(v) for v in video_grid_thw[video_index])
                    second_per_grid = (
                        second_per_grid_ts[video_index]
                        if second_per_grid_ts is not None
                        else torch.tensor(1.0)
                    )
                    video_index += 1
                    remain_videos -= 1
                    end = end_video
                grid_t, grid_h, grid_w = t, h // merge, w // merge
                text_len = end - start
                offset = int(pieces[-1].max()) + 1 if pieces else 0
                pieces.append(torch.arange(text_len).view(1, -1).expand(3, -1) + offset)
                # float32 arithmetic in the published order: (t * second_per_grid) * tokens_per_second
                time = torch.arange(grid_t).view(-1, 1).expand(-1, grid_h * grid_w) * second_per_grid
                t_index = (time * vision.tokens_per_second).long().flatten()
                h_index = torch.arange(grid_h).view(1, -1, 1).expand(grid_t, -1, grid_w).flatten()
                w_index = torch.arange(grid_w).view(1, 1, -1).expand(grid_t, grid_h, -1).flatten()
                pieces.append(torch.stack([t_index, h_index, w_index]) + text_len + offset)
                start = end + grid_t * grid_h * grid_w
            if start < len(tokens):
                offset = int(pieces[-1].max()) + 1 if pieces else 0
                pieces.append(torch.arange(len(tokens) - start).view(1, -1).expand(3, -1) + offset)
            positions = torch.cat(pieces, dim=1).reshape(3, -1)
            keep = attention_mask[row].to(position_ids.device) == 1
            position_ids[:, row, keep] = positions.to(position_ids.device, position_ids.dtype)
            deltas.append(int(positions.max()) + 1 - input_ids.shape[1])
        return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)

    def _forward_position_ids(
        self,
        input_ids: Tensor | None,
        inputs_embeds: Tensor,
        attention_mask: Tensor | None,
        past_length: int,
        image_grid_thw: Tensor | None,
        video_grid_thw: Tensor | None,
        second_per_grid_ts: Tensor | None,
    ) -> Tensor:
        """Positions for a forward call without explicit position_ids (4.51 semantics)."""
        if input_ids is not None and (past_length == 0 or self.rope_deltas is None):
            mask = attention_mask if attention_mask is not None and attention_mask.ndim == 2 else None
            position_ids, self.rope_deltas = self.get_rope_index(
                input_ids, image_grid_thw, video_grid_thw, second_per_grid_ts, mask
            )
            return position_ids
        batch, length = inputs_embeds.shape[:2]
        positions = torch.arange(past_length, past_length + length, device=inputs_embeds.device)
        positions = positions.view(1, 1, -1).expand(3, batch, -1)
        if self.rope_deltas is not None and past_length > 0:
            deltas = self.rope_deltas.to(inputs_embeds.device)
            positions = positions + deltas.repeat_interleave(batch // deltas.shape[0], dim=0).view(
                1, batch, 1
            )
        return positions

    # ------------------------------------------------------------------ forward / generate
    def _scatter(
        self, input_ids: Tensor, embeds: Tensor, token_id: int, features: Tensor, what: str
    ) -> Tensor:
        mask = input_ids == token_id  # [B, L]
        count = int(mask.sum())
        if count != features.shape[0]:
            raise ValueError(
                f"{what} features and {what} placeholder tokens do not match: {count} tokens (id {token_id}) "
                f"in input_ids, {features.shape[0]} feature rows"
            )
        features = features.to(embeds.device, embeds.dtype)
        return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), features)

    def forward(  # type: ignore[override]
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        pixel_values: Tensor | None = None,
        pixel_values_videos: Tensor | None = None,
        image_grid_thw: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        second_per_grid_ts: Tensor | None = None,
        video_tchw: Sequence[Tensor] | None = None,
        image_tchw: Sequence[Tensor] | None = None,
        fused_video_embeds: Tensor | None = None,
        logits_to_keep: int | Tensor = 0,
        **kwargs: Any,
    ):
        """Qwen2.5-VL forward with Spatial-MLLM video features.

        Video input is either ``pixel_values_videos`` + ``video_grid_thw`` + ``video_tchw`` (both encoders
        run) or ``fused_video_embeds`` [N_video_tokens, hidden] (+ ``video_grid_thw`` for the positions).
        Images (``pixel_values`` + ``image_grid_thw`` + ``image_tchw``) get the spatial features too, as
        in the published forward.
        Returns transformers' ``CausalLMOutputWithPast``.
        """
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("forward needs input_ids or inputs_embeds")
            inputs_embeds = self.get_input_embeddings()(input_ids)  # [B, L, hidden]
            if pixel_values is not None:
                if image_tchw is None or image_grid_thw is None:
                    raise ValueError(
                        "Spatial-MLLM needs image_grid_thw and image_tchw (each image as [2, 3, H, W] in "
                        "0..1, the frame repeated for the temporal patch) next to pixel_values"
                    )
                image_embeds = self.get_fused_image_embeds(pixel_values, image_grid_thw, image_tchw)
                inputs_embeds = self._scatter(
                    input_ids, inputs_embeds, self.config.image_token_id, image_embeds, "image"
                )
            if fused_video_embeds is None and pixel_values_videos is not None:
                if video_tchw is None or video_grid_thw is None:
                    raise ValueError(
                        "Spatial-MLLM needs video_grid_thw and video_tchw (the frames in 0..1, [T, 3, H, W] "
                        "per video) next to pixel_values_videos"
                    )
                fused_video_embeds = self.get_fused_video_embeds(
                    pixel_values_videos, video_grid_thw, video_tchw
                )
            if fused_video_embeds is not None:
                inputs_embeds = self._scatter(
                    input_ids, inputs_embeds, self.config.video_token_id, fused_video_embeds, "video"
                )
        if position_ids is None:
            position_ids = self._forward_position_ids(
                input_ids,
                inputs_embeds,
                attention_mask,
                past_length,
                image_grid_thw,
                video_grid_thw,
                second_per_grid_ts,
            )
        return super().forward(
            input_ids=None,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _prepare_position_ids_for_generation(self, inputs_tensor: Tensor, model_kwargs: dict) -> Tensor:
        """[4, B, L]: the text row (for masks) + the 3 M-RoPE rows of 4.51's ``get_rope_index``."""
        text_positions = GenerationMixin._prepare_position_ids_for_generation(
            self, inputs_tensor, model_kwargs
        )
        input_ids = model_kwargs.get("input_ids")
        if input_ids is None or input_ids.shape[1] == 0:
            input_ids = inputs_tensor
        if input_ids.ndim == 2 and not input_ids.is_floating_point():
            mask = model_kwargs.get("attention_mask")
            vision_positions, self.rope_deltas = self.get_rope_index(
                input_ids,
                model_kwargs.get("image_grid_thw"),
                model_kwargs.get("video_grid_thw"),
                model_kwargs.get("second_per_grid_ts"),
                mask if mask is not None and mask.ndim == 2 else None,
            )
        else:
            vision_positions = text_positions.unsqueeze(0).expand(3, -1, -1)
            self.rope_deltas = torch.zeros(text_positions.shape[0], 1, dtype=torch.long)
        return torch.cat([text_positions[None].to(vision_positions.device), vision_positions], dim=0)

    def prepare_inputs_for_generation(self, input_ids: Tensor, *args: Any, **kwargs: Any) -> dict:
        """Base preparation, then drop the prefill-only visual inputs after the first step (KV cache)."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if not kwargs.get("is_first_iteration", False) and model_inputs.get("use_cache", True):
            for key in PREFILL_ONLY_INPUTS:
                model_inputs.pop(key, None)
        return model_inputs


def _index_or(tokens: list[int], token_id: int, start: int) -> int:
    """``tokens.index(token_id, start)``, or past the end when absent."""
    try:
        return tokens.index(token_id, start)
    except ValueError:
        return len(tokens) + 1


def _text_positions(input_ids: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Text-only positions of 4.51 (padding positions are 1); deltas align decoding after padding."""
    if attention_mask is None:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).view(1, 1, -1)
        positions = positions.expand(3, input_ids.shape[0], -1)
        return positions, torch.zeros(input_ids.shape[0], 1, dtype=input_ids.dtype, device=input_ids.device)
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 1)
    positions = positions.unsqueeze(0).expand(3, -1, -1).to(attention_mask.device)
    deltas = positions.max(0)[0].max(-1, keepdim=True)[0] + 1 - attention_mask.shape[-1]
    return positions, deltas
