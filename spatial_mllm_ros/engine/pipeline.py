# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The spatial question-answering pipeline: frames + a question in, a typed :class:`Answer` out.

Stages (each timed): select frames (``core.selection``), prepare them as Qwen video patches plus
VGGT input at the same resolution with their real timing (``model.preprocessing``), encode them
(a :mod:`~spatial_mllm_ros.engine.backends` backend, through the visual-feature cache), build the
upstream prompt and chat input (``core.prompts``, ``model.tokenizer``), generate greedily with the
language model on torch (``generate(fused_video_embeds=...)``), parse the text into a choice or an
SI number (``core.answers``).

Several questions about the same frames (``ask_many``) share one selection, one encoding and one
left-padded ``generate`` call. ``ask`` never raises on bad input: a rejected question comes back
as an :class:`Answer` with ``error`` set, which is what a ROS service needs. The model is used
under a lock, so one ``SpatialQA`` can serve several callbacks/threads.
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.core.answers import parse_answer
from spatial_mllm_ros.core.frames import Frame, frame_size_problem
from spatial_mllm_ros.core.prompts import OPEN_TASK_TYPE, TASK_TYPES, build_prompt, infer_task_type
from spatial_mllm_ros.core.selection import Selection, make_selector
from spatial_mllm_ros.engine.answer import Answer
from spatial_mllm_ros.engine.backends import VisualBackend, make_backend
from spatial_mllm_ros.engine.cache import FeatureCache, FeatureKey, nbytes_of
from spatial_mllm_ros.engine.decoding import PrefixDecoder, PrefixState, prefix_length
from spatial_mllm_ros.engine.requests import MAX_OPTION_CHARS, MAX_OPTIONS, MAX_QUESTION_CHARS
from spatial_mllm_ros.engine.shapes import PreparedShape, PrepareReport, frame_slots, spread_frames

NO_MODEL = "no model loaded"
EMPTY_BUFFER = "empty buffer"
DEFAULT_CACHE_BYTES = 1 << 30
DEFAULT_MAX_PIXELS = 768 * 28 * 28
QUESTION_FIELDS = ("question", "options", "task_type", "query_id")


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def default_export_dir() -> Path:
    """Where exported ONNX graphs and TensorRT engines go unless told otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spatial_mllm_ros"


def model_fingerprint(model_dir: Path) -> str:
    """Short id of a checkpoint directory: name + hash of its config and weight files' sizes/mtimes."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.suffix in (".json", ".safetensors") and path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            if path.name == "config.json":
                digest.update(path.read_bytes())
    return f"{model_dir.name}@{digest.hexdigest()[:12]}"


@dataclass
class _Question:
    """One validated question."""

    question: str
    options: list[str] | None
    task_type: str
    prompt: str
    query_id: str


@dataclass
class VisualEntry:
    """What the feature cache keeps per frame set: fused video embeddings and the LLM's prefix keys/values."""

    fused: torch.Tensor  # [N_video_tokens, hidden]
    video_grid_thw: torch.Tensor  # [1, 3]
    second_per_grid_ts: torch.Tensor  # [1]
    num_video_tokens: int
    prefix: PrefixState | None = None  # system + video prefix run through the LLM

    @property
    def nbytes(self) -> int:
        """Bytes held (embeddings + prefix keys/values)."""
        return nbytes_of(self.fused) + (self.prefix.nbytes if self.prefix is not None else 0)


@dataclass
class _Encoded:
    """One frame set, selected, prepared and encoded, with the time each stage took."""

    selection: Selection
    stamps: list[float]
    camera_ids: list[str]
    entry: VisualEntry
    selection_ms: float
    prepare_ms: float
    encode_ms: float
    cache_hit: bool
    key: FeatureKey | None = None  # set when the entry still has to be put into the cache


class SpatialQA:
    """Visual-spatial question answering over a list of frames.

    Args:
        model_dir: a local Spatial-MLLM checkpoint directory or a Hub id ``org/name[@revision]`` (resolved
            from the local Hugging Face cache, downloaded when online; see :mod:`spatial_mllm_ros.model.hub`),
            or None (every ask answers "no model loaded").
        backend: visual encoder backend: "torch", "onnxruntime" or "tensorrt".
        llm_backend: language-model backend: "torch", "onnxruntime" (the exported graph with its KV
            cache, :mod:`~spatial_mllm_ros.engine.llm_onnx`) or "tensorrt"; ``llm_options`` its options
            (``quantization`` "none"/"int8"/"int4", ``block_size``, ``symmetric``, ``accuracy_level``,
            ``providers``, ``intra_op_threads``; TensorRT: ``precision``, ``max_batch``, ``max_length``).
            Off torch, the torch decoder layers are released (``keep_torch_layers`` keeps them).
        device: "cpu" or "cuda[:N]".
        dtype: "float32", "bfloat16" or "float16".
        selector: frame selector name (``core.selection.make_selector``); ``selector_params`` its options.
        max_frames: default number of frames shown to the model.
        max_new_tokens: default generation length.
        cache_bytes: bound of the feature cache (0 disables it): fused video embeddings per frame set
            and, with ``cache_prefix_kv``, the LLM's keys/values of the system + video prompt prefix.
        max_pixels / min_pixels: per-frame pixel budget of Qwen's resize (upstream 768*28*28).
        export_dir: where ONNX graphs / TensorRT engines are written (default ``~/.cache/spatial_mllm_ros``).
        max_batch: at most this many questions per ``generate`` call.
        backend_options: extra keyword arguments of the backend (e.g. ``providers`` for onnxruntime).
        cache_prefix_kv: keep the prefix keys/values in the cache (more bytes per entry, much less
            work per follow-up question).
        monocular_selector: "vggt" to select frames without depth/pose by VGGT world points (the
            loaded model's aggregator + the checkpoint's point head) instead of uniformly.
        vggt_options: ``target_size`` / ``frames_per_pass`` of that VGGT route (and of the
            "space_aware_points" selector, which always uses the loaded model).

    Raises ValueError / FileNotFoundError for a bad configuration (unknown backend, dtype, missing
    checkpoint), at construction time, so that a node fails fast at start-up.
    """

    def __init__(
        self,
        model_dir: str | Path | None,
        backend: str = "torch",
        device: str = "cpu",
        dtype: str = "float32",
        selector: str = "space_aware",
        max_frames: int = 16,
        max_new_tokens: int = 16,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        selector_params: Mapping[str, Any] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_pixels: int | None = None,
        export_dir: str | Path | None = None,
        max_batch: int = 8,
        backend_options: Mapping[str, Any] | None = None,
        cache_prefix_kv: bool = True,
        monocular_selector: str | None = None,
        vggt_options: Mapping[str, Any] | None = None,
        llm_backend: str = "torch",
        llm_options: Mapping[str, Any] | None = None,
    ):
        from spatial_mllm_ros.engine.llm_onnx import check_llm_backend
        from spatial_mllm_ros.model.loading import resolve_dtype

        check_llm_backend(llm_backend, llm_options)
        if max_frames < 1 or max_new_tokens < 1 or max_batch < 1:
            raise ValueError("max_frames, max_new_tokens and max_batch must be >= 1")
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype)
        self.max_frames = int(max_frames)
        self.max_new_tokens = int(max_new_tokens)
        self.max_pixels = int(max_pixels)
        self.min_pixels = min_pixels
        self.max_batch = int(max_batch)
        self.cache_prefix_kv = bool(cache_prefix_kv)
        self.selector_name = selector
        self.selector = make_selector(selector, **dict(selector_params or {}))
        self.cache = FeatureCache(cache_bytes)
        self.model_id = ""
        self.model: Any = None
        self.tokenizer: Any = None
        self.backend: VisualBackend | None = None
        self._decoder: PrefixDecoder | None = None
        self.llm: Any = None
        self.model_dir: Path | None = None
        self.prepared: PreparedShape | None = None  # set by prepare(): every video is mapped onto it
        self._lock = threading.RLock()
        if model_dir is None:
            return
        from spatial_mllm_ros.model.hub import resolve_model_path

        model_dir = resolve_model_path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no Spatial-MLLM checkpoint at {model_dir} (config.json missing)")
        self.model_dir = model_dir
        from spatial_mllm_ros.engine.llm_onnx import make_language_model
        from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration
        from spatial_mllm_ros.model.tokenizer import load_checkpoint_tokenizer

        self.model_id = model_fingerprint(model_dir)
        self.model = SpatialMLLMForConditionalGeneration.from_pretrained(
            model_dir, dtype=self.dtype, device=self.device
        ).eval()
        self.tokenizer = load_checkpoint_tokenizer(model_dir)
        export_root = Path(export_dir) if export_dir else default_export_dir() / "onnx"
        self.backend = make_backend(backend, self.model, export_root, model_id=self.model_id,
                                    **dict(backend_options or {}))
        self.llm = make_language_model(llm_backend, self.model, export_root, self.model_id, llm_options)
        if self.llm.name != "torch" and not dict(llm_options or {}).get("keep_torch_layers", False):
            # the runner holds the decoder now; the embedding table (tied lm_head) stays for inputs_embeds
            self.model.model.language_model.layers = torch.nn.ModuleList()
            gc.collect()
        self._eos_ids, self._pad_id = self._special_ids()
        self._decoder = PrefixDecoder(self.model, self._eos_ids, self._pad_id, self.llm)
        from spatial_mllm_ros.engine.vggt_selection import with_vggt_route

        self.selector = with_vggt_route(self.selector, selector, self.model, model_dir, monocular_selector,
                                        selector_params, vggt_options)

    # ------------------------------------------------------------------ public API
    @property
    def model_loaded(self) -> bool:
        """True when a checkpoint is loaded."""
        return self.model is not None

    @property
    def backend_name(self) -> str:
        """The visual backend's name ("torch-cpu", "onnxruntime-cpu", "tensorrt-fp16"), "" without a model.

        With the language model off torch its runner is named too ("torch-cpu+llm-onnxruntime-cpu").
        """
        if self.backend is None:
            return ""
        if self.llm is None or self.llm.name == "torch":
            return self.backend.name
        return f"{self.backend.name}+llm-{self.llm.name}"

    def ask(
        self,
        frames: Sequence[Frame],
        question: str,
        options: Sequence[str] | None = None,
        task_type: str | None = None,
        max_frames: int | None = None,
        query_id: str | None = None,
    ) -> Answer:
        """Answer one question about ``frames`` (never raises: problems come back in ``Answer.error``)."""
        return self.ask_many(
            frames,
            [{"question": question, "options": options, "task_type": task_type, "query_id": query_id}],
            max_frames=max_frames,
        )[0]

    def ask_many(
        self, frames: Sequence[Frame], questions: Sequence[Mapping[str, Any]], max_frames: int | None = None
    ) -> list[Answer]:
        """Answer several questions about the same frames: one selection, one encoding, batched generation.

        Each question is a mapping with "question" and optionally "options", "task_type", "query_id".
        Returns one :class:`Answer` per question, in order (bad questions get an error, the rest run).
        """
        started = time.perf_counter()
        if not isinstance(questions, Sequence) or isinstance(questions, (str, bytes)):
            return [Answer.failure(f"questions must be a list of dicts, got {type(questions).__name__}")]
        parsed: list[_Question | Answer] = [self._validate_question(q) for q in questions]
        valid = [q for q in parsed if isinstance(q, _Question)]
        if not valid:
            return [q for q in parsed if isinstance(q, Answer)]
        problem = self._check_common(frames, max_frames)
        if problem:
            return [self._fail(problem, q) if isinstance(q, _Question) else q for q in parsed]
        k = int(max_frames if max_frames is not None else self.max_frames)
        try:
            with self._lock:
                if not self.model_loaded:  # closed meanwhile
                    return [self._fail(NO_MODEL, q) if isinstance(q, _Question) else q for q in parsed]
                encoded = self._select_and_encode(list(frames), k)
                prompts = [q.prompt for q in valid]
                texts, generate_ms = self._generate_all(encoded, prompts, self.max_new_tokens)
        except ValueError as error:
            return [self._fail(str(error), q) if isinstance(q, _Question) else q for q in parsed]
        except Exception as error:  # a failure inside the model must not take a node down
            message = f"inference failed: {type(error).__name__}: {error}"
            return [self._fail(message, q) if isinstance(q, _Question) else q for q in parsed]
        results = iter(texts)
        answers = []
        for item in parsed:
            if isinstance(item, Answer):
                answers.append(item)
                continue
            text, confidence = next(results)
            answers.append(self._make_answer(item, text, confidence, encoded, generate_ms, started))
        return answers

    def generate_text(
        self, frames: Sequence[Frame], prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str]:
        """Raw greedy generation for several prompts on ONE frame set, used as given (no selection).

        The frames are shown in the given order (sorted by stamp); the prompts are complete user
        texts (no template added). Raises ValueError on bad input or without a model.
        """
        if not self.model_loaded:
            raise ValueError(NO_MODEL)
        problem = self._check_frames(frames)
        if problem:
            raise ValueError(problem)
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p.strip()
                                                               for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        with self._lock:
            given = Selection(indices=list(range(len(frames))), method="given", candidates=len(frames))
            encoded = self._prepare_and_encode(list(frames), given, 0.0)
            tokens = int(max_new_tokens or self.max_new_tokens)
            results, _ = self._generate_all(encoded, list(prompts), tokens)
        return [text for text, _ in results]

    def warmup(self, frames: Sequence[Frame] | None = None) -> None:
        """Run the model once so that the first real question is not slow.

        With ``frames``: a full question on them (also exports/builds the backend's graph for their
        frame count and resolution). Without: a one-token text-only generation (LLM kernels only).
        """
        if not self.model_loaded:
            return
        if frames:
            self.ask(frames, "How many chairs are in this room?", max_frames=len(frames))
            return
        with self._lock, torch.inference_mode():
            ids = torch.tensor([self._chat_ids("Hello", 0)], device=self.device)
            positions = torch.arange(ids.shape[1], device=self.device).view(1, 1, -1).expand(3, 1, -1)
            self.llm(self._decoder.embed(ids), torch.ones_like(ids), positions, None)

    def prepare(self, num_frames: int | None = None, height: int | None = None,
                width: int | None = None) -> PrepareReport:
        """Build or load the visual engines at the one shape questions will have, then warm up there.

        ``num_frames`` (default ``max_frames``) frames of ``height`` x ``width`` camera pixels: the ONNX
        graph / TensorRT engine for that shape is exported or loaded now, and a dummy question runs at
        it (language-model kernels included), so the first real question costs what later ones do.
        From then on every video is mapped onto this shape (see :mod:`~spatial_mllm_ros.engine.shapes`):
        fewer frames are spread over the slots, other sizes resized, more frames than ``num_frames``
        not selected; the backend never builds again. Without a size only the text-only warm-up runs.
        Raises ValueError for a bad shape (or without a model), and what the backend raises when
        building fails.
        """
        from spatial_mllm_ros.model.preprocessing import smart_resize

        if not self.model_loaded:
            raise ValueError(NO_MODEL)
        slots = frame_slots(int(num_frames if num_frames is not None else self.max_frames))
        report = PrepareReport(backend=self.backend_name, shape=None)
        started = time.perf_counter()
        if not height or not width:
            self.warmup()
            report.warmup_s = time.perf_counter() - started
            return report
        size_problem = frame_size_problem(int(height), int(width))
        if size_problem:
            raise ValueError(f"cannot prepare for input frames {size_problem}")
        model_hw = smart_resize(int(height), int(width), **self._pixel_limits())
        shape = PreparedShape(slots, (int(height), int(width)), model_hw)
        with self._lock:
            exports_before = getattr(self.backend, "exports", 0)
            report.built = self.backend.prepare(slots, *model_hw)
            report.exports = getattr(self.backend, "exports", 0) - exports_before
            report.build_s = time.perf_counter() - started
            self.prepared = report.shape = shape
            started = time.perf_counter()
            self._warm_question(shape)
            report.warmup_s = time.perf_counter() - started
        return report

    def _warm_question(self, shape: PreparedShape) -> None:
        """One question on synthetic frames at the prepared shape, leaving the feature cache as it was."""
        height, width = shape.input_hw
        ramp = np.linspace(0, 255, height * width * 3, dtype=np.float64).astype(np.uint8)
        frames = [Frame(stamp=0.1 * i, camera_id="__warmup__",
                        rgb=np.roll(ramp, 97 * i).reshape(height, width, 3)) for i in range(shape.num_frames)]
        given = Selection(indices=list(range(len(frames))), method="given", candidates=len(frames))
        encoded = self._prepare_and_encode(frames, given, 0.0)
        encoded.key = None  # not cached: nobody asks about these frames again
        self._generate_all(encoded, [build_prompt("How many chairs are in this room?")], 1)

    def _pixel_limits(self) -> dict[str, int]:
        limits = {"max_pixels": self.max_pixels}
        if self.min_pixels is not None:
            limits["min_pixels"] = self.min_pixels
        return limits

    def close(self) -> None:
        """Free the model, the backend's sessions/engines and the feature cache."""
        with self._lock:
            if self.backend is not None:
                self.backend.close()
            self.backend = None
            self.model = None
            self.llm = None
            self._decoder = None
            self.cache.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ validation
    def _fail(self, error: str, question: _Question | None = None) -> Answer:
        if question is None:
            return Answer.failure(error, model_id=self.model_id, backend=self.backend_name)
        return Answer.failure(error, question.question, question.query_id, task_type=question.task_type,
                              model_id=self.model_id, backend=self.backend_name)

    def _validate_question(self, item: Any) -> _Question | Answer:
        if not isinstance(item, Mapping):
            return self._fail(f"each question must be a dict, got {type(item).__name__}")
        question, options = item.get("question"), item.get("options")
        task_type, query_id = item.get("task_type"), item.get("query_id")
        query_id = "" if query_id is None else str(query_id)
        unknown = sorted(set(item) - set(QUESTION_FIELDS))

        def fail(reason: str) -> Answer:
            return Answer.failure(reason, question, query_id, model_id=self.model_id,
                                  backend=self.backend_name)

        if unknown:
            return fail(f"unknown question fields {unknown}; expected {list(QUESTION_FIELDS)}")
        if not isinstance(question, str) or not question.strip():
            return fail("the question must be a non-empty string")
        if len(question) > MAX_QUESTION_CHARS:
            return fail(f"the question is too long ({len(question)} > {MAX_QUESTION_CHARS} characters)")
        if options is not None:
            if isinstance(options, str) or not isinstance(options, Sequence):
                return fail("options must be a list of strings")
            if not all(isinstance(o, str) and o.strip() for o in options):
                return fail("every option must be a non-empty string")
            if len(options) > MAX_OPTIONS or max(map(len, options), default=0) > MAX_OPTION_CHARS:
                return fail(f"at most {MAX_OPTIONS} options of at most {MAX_OPTION_CHARS} characters")
            options = list(options) or None
        if task_type in (None, ""):
            task_type = infer_task_type(question, options)
        elif task_type not in TASK_TYPES and task_type != OPEN_TASK_TYPE:
            return fail(f"unknown task type {task_type!r}")
        try:
            prompt = build_prompt(question, options, task_type)
        except ValueError as error:
            return fail(str(error))
        return _Question(question.strip(), options, str(task_type), prompt, query_id)

    def _check_frames(self, frames: Any) -> str:
        if frames is None or (isinstance(frames, Sequence) and len(frames) == 0):
            return EMPTY_BUFFER
        if not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)):
            return f"frames must be a list of Frame, got {type(frames).__name__}"
        for index, frame in enumerate(frames):
            if not isinstance(frame, Frame):
                return f"frames[{index}] is a {type(frame).__name__}, not a Frame"
            if not (isinstance(frame.stamp, (int, float)) and math.isfinite(frame.stamp)):
                return f"frames[{index}] has a non-finite stamp"
            size_problem = frame_size_problem(*frame.rgb.shape[:2])
            if size_problem:
                return f"frames[{index}] is {size_problem}"
        return ""

    def _check_common(self, frames: Any, max_frames: Any) -> str:
        if not self.model_loaded:
            return NO_MODEL
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames < 1):
            return f"max_frames must be a positive integer, got {max_frames!r}"
        return self._check_frames(frames)

    # ------------------------------------------------------------------ stages
    def _select_and_encode(self, frames: list[Frame], k: int) -> _Encoded:
        order = sorted(range(len(frames)), key=lambda i: frames[i].stamp)
        if order != list(range(len(frames))):
            frames = [frames[i] for i in order]  # selection indices refer to time order
        if self.prepared is not None:  # the engines exist for this many frames, no more
            k = min(k, self.prepared.num_frames)
        t0 = time.perf_counter()
        selection = self.selector.select(frames, min(k, len(frames)))
        selection_ms = _ms(time.perf_counter() - t0)
        if not selection.indices:
            raise ValueError("frame selection chose no frames")
        return self._prepare_and_encode([frames[i] for i in selection.indices], selection, selection_ms)

    def _prepare_and_encode(self, chosen: list[Frame], selection: Selection, selection_ms: float) -> _Encoded:
        """Frames -> cached or freshly computed :class:`VisualEntry` (preparation skipped on a hit)."""
        from spatial_mllm_ros.model.preprocessing import prepare_video, smart_resize

        chosen = sorted(chosen, key=lambda f: f.stamp)
        stamps = [float(f.stamp) for f in chosen]
        camera_ids = [f.camera_id for f in chosen]
        height, width = chosen[0].rgb.shape[:2]
        pixel_limits = self._pixel_limits()
        variant = f"{self.backend_name}/{self.dtype}/{self.device}"
        prepared = self.prepared
        if prepared is not None and len(chosen) <= prepared.num_frames:  # map onto the built shape
            (height, width), variant = prepared.input_hw, f"{variant}/T{prepared.num_frames}"
        model_hw = smart_resize(height, width, **pixel_limits)  # the resolution the model sees
        key = FeatureKey.from_frames(stamps, camera_ids, model_hw[0], model_hw[1], self.model_id, variant,
                                     images=[f.rgb for f in chosen])
        t0 = time.perf_counter()
        entry = self.cache.get(key)
        if entry is not None:
            return _Encoded(selection, stamps, camera_ids, entry, selection_ms, 0.0,
                            _ms(time.perf_counter() - t0), cache_hit=True)
        t0 = time.perf_counter()
        shown = chosen
        if prepared is not None and len(chosen) <= prepared.num_frames:
            shown = spread_frames(chosen, prepared.num_frames)
        rgb = np.stack([_resized(f.rgb, height, width) for f in shown])  # [T, H, W, 3] uint8
        video = prepare_video(rgb, [float(f.stamp) for f in shown], **pixel_limits)
        prepare_ms = _ms(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fused = self.backend.encode(video.pixel_values_videos, video.video_grid_thw, video.video_tchw[0])
        encode_ms = _ms(time.perf_counter() - t0)
        entry = VisualEntry(
            fused=fused,
            video_grid_thw=torch.as_tensor(video.video_grid_thw).reshape(1, 3).to(self.device),
            second_per_grid_ts=torch.as_tensor(video.second_per_grid_ts, dtype=torch.float32).reshape(1),
            num_video_tokens=int(video.num_video_tokens),
        )
        return _Encoded(selection, stamps, camera_ids, entry, selection_ms, prepare_ms, encode_ms,
                        cache_hit=False, key=key)

    def _special_ids(self) -> tuple[list[int], int]:
        """Stop ids (the checkpoint's eos + <|im_end|> + <|endoftext|>) and the padding id."""
        end_of_text = self.tokenizer.token_to_id("<|endoftext|>")
        eos = self.model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        eos_ids = sorted({*eos_ids, self.tokenizer.token_to_id("<|im_end|>"), end_of_text})
        pad = self.model.generation_config.pad_token_id
        return eos_ids, int(pad if pad is not None else end_of_text)

    def _chat_ids(self, prompt: str, num_video_tokens: int) -> list[int]:
        from spatial_mllm_ros.model.tokenizer import build_chat_input_ids

        return list(build_chat_input_ids(self.tokenizer, prompt, num_video_tokens))

    def _generate_all(
        self, encoded: _Encoded, prompts: list[str], max_new_tokens: int
    ) -> tuple[list[tuple[str, float]], float]:
        """Greedy answers to ``prompts`` on one encoded frame set; returns them and the LLM time in ms.

        The system + video prefix runs once (or comes from the cache); the questions then run in
        batches of ``max_batch`` on top of it. A new entry is put into the feature cache here,
        with its prefix when ``cache_prefix_kv``.
        """
        entry = encoded.entry
        sequences = [self._chat_ids(p, entry.num_video_tokens) for p in prompts]
        started = time.perf_counter()
        prefix = entry.prefix
        if prefix is None:
            plen = prefix_length(sequences[0], self.tokenizer.vision_end_id)
            prefix = self._decoder.prefill_prefix(sequences[0][:plen], entry.fused, entry.video_grid_thw,
                                                  entry.second_per_grid_ts)
            if self.cache_prefix_kv:
                entry.prefix = prefix
        if encoded.key is not None:
            self.cache.put(encoded.key, entry)
        results: list[tuple[str, float]] = []
        for start in range(0, len(sequences), self.max_batch):
            generated = self._decoder.generate(prefix, sequences[start : start + self.max_batch],
                                               entry.video_grid_thw, entry.second_per_grid_ts, max_new_tokens)
            for tokens, probs in generated:
                text_tokens = [t for t in tokens if t not in self._decoder.eos_ids]
                text = self.tokenizer.decode(text_tokens, skip_special_tokens=True).strip()
                # mean probability of the answer tokens (of the end token when the answer is empty)
                scored = probs[: len(text_tokens)] or probs[:1]
                results.append((text, float(sum(scored) / len(scored)) if scored else -1.0))
        return results, _ms(time.perf_counter() - started)

    def _make_answer(self, question: _Question, text: str, confidence: float, encoded: _Encoded,
                     generate_ms: float, started: float) -> Answer:
        parsed = parse_answer(text, question.task_type, question.options)
        return Answer(
            query_id=question.query_id,
            question=question.question,
            task_type=question.task_type,
            kind=parsed.kind,
            choice_letter=parsed.choice_letter,
            choice_index=parsed.choice_index,
            value=parsed.value,
            unit=parsed.unit,
            raw_text=text,
            confidence=confidence,
            frame_stamps=list(encoded.stamps),
            selection=encoded.selection,
            selection_ms=encoded.selection_ms,
            encode_ms=encoded.encode_ms,
            generate_ms=generate_ms,
            model_id=self.model_id,
            backend=self.backend_name,
            prepare_ms=encoded.prepare_ms,
            total_ms=_ms(time.perf_counter() - started),
            cache_hit=encoded.cache_hit,
            parse_reason=parsed.reason,
            frame_camera_ids=list(encoded.camera_ids),
        )


def _resized(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``rgb`` at ``height`` x ``width`` (bilinear; frames of one clip normally share a size)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.BILINEAR))
