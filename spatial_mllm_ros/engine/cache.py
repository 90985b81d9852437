# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Visual-feature cache: encode a set of selected frames once, answer many questions about them.

Encoding (Qwen vision tower + VGGT aggregator + connector) is most of the cost of a question on a
short clip. A robot operator typically asks several questions about the same moment, so the fused
video embeddings are kept, keyed by what determines them: the selected frames' stamps and cameras,
the resolution they were encoded at, and the model (plus backend and dtype, whose numerics differ).
The cache is bounded by bytes, not entries, because one entry's size grows with frames x pixels,
and evicts the least recently used entry first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureKey:
    """What determines a set of fused video embeddings.

    Stamps are stored as integer nanoseconds so that float round-off of the same stamp never
    produces two keys.
    """

    stamps_ns: tuple[int, ...]
    camera_ids: tuple[str, ...]
    height: int
    width: int
    model_id: str
    variant: str = ""  # backend + dtype (+ device): numerics differ between them
    content: str = ""  # digest of sampled pixels: two recordings with equal stamps never collide

    @classmethod
    def from_frames(
        cls,
        stamps: Sequence[float],
        camera_ids: Sequence[str],
        height: int,
        width: int,
        model_id: str,
        variant: str = "",
        images: Sequence[Any] | None = None,
    ) -> FeatureKey:
        """Build a key from float second stamps (one camera id per frame).

        With ``images`` (the frames' (H, W, 3) arrays) a digest of every 8th pixel in both
        directions joins the key: bags replayed from time 0 share stamps but not pixels.
        """
        if len(stamps) != len(camera_ids):
            raise ValueError(f"{len(stamps)} stamps but {len(camera_ids)} camera ids")
        return cls(
            stamps_ns=tuple(round(float(s) * 1e9) for s in stamps),
            camera_ids=tuple(str(c) for c in camera_ids),
            height=int(height),
            width=int(width),
            model_id=str(model_id),
            variant=str(variant),
            content=pixel_digest(images) if images is not None else "",
        )


def pixel_digest(images: Sequence[Any], step: int = 8) -> str:
    """Short hash of a strided sample of each image (about 1/64 of the pixels) and its shape."""
    digest = hashlib.blake2b(digest_size=16)
    for image in images:
        array = np.asarray(image)
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array[::step, ::step]).tobytes())
    return digest.hexdigest()


def nbytes_of(value: Any) -> int:
    """Bytes held by a tensor/array (or a tuple/list/dict of them); other objects count as 0."""
    if hasattr(value, "untyped_storage"):  # torch.Tensor: count the elements it views
        return int(value.numel() * value.element_size())
    if hasattr(value, "nbytes"):  # numpy array
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(nbytes_of(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    return 0


@dataclass
class CacheStats:
    """Counters of a :class:`FeatureCache`."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    rejected_too_large: int = 0


class FeatureCache:
    """Byte-bounded LRU map from :class:`FeatureKey` to fused video embeddings (thread-safe).

    ``max_bytes=0`` disables caching (every ``get`` misses, nothing is stored). An entry larger
    than ``max_bytes`` on its own is not stored (it would evict everything and still not fit).
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.stats = CacheStats()
        self._entries: OrderedDict[FeatureKey, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes_used(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: FeatureKey) -> bool:
        return key in self._entries

    def lru_keys(self) -> list[FeatureKey]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def peek(self, key: FeatureKey) -> Any | None:
        """The cached value or None, without counting a hit/miss or refreshing its recency."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry[0]

    def get(self, key: FeatureKey) -> Any | None:
        """The cached value (marking it most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry[0]

    def put(self, key: FeatureKey, value: Any) -> bool:
        """Store ``value``; evict least recently used entries until it fits. False if not stored."""
        size = nbytes_of(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                self.stats.rejected_too_large += 1
                return False
            while self._entries and self._bytes + size > self.max_bytes:
                _, (_, evicted_size) = self._entries.popitem(last=False)
                self._bytes -= evicted_size
                self.stats.evictions += 1
            self._entries[key] = (value, size)
            self._bytes += size
            return True

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
