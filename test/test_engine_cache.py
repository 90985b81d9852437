# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Visual-feature cache: byte bound, LRU order, key identity."""

import threading

import numpy as np
import pytest
import torch

from spatial_mllm_ros.engine.cache import FeatureCache, FeatureKey, nbytes_of


def key(i: int, **changes) -> FeatureKey:
    fields = dict(stamps=[float(i), i + 0.5], camera_ids=["cam", "cam"], height=56, width=84, model_id="m")
    fields.update(changes)
    return FeatureKey.from_frames(**fields)


def block(nbytes: int) -> torch.Tensor:
    return torch.zeros(nbytes // 4, dtype=torch.float32)


def test_nbytes_counts_tensors_arrays_and_containers():
    assert nbytes_of(torch.zeros(10, 3, dtype=torch.bfloat16)) == 60
    assert nbytes_of(np.zeros((4, 4), np.float64)) == 128
    assert nbytes_of((torch.zeros(2), {"a": np.zeros(3, np.uint8)})) == 11
    assert nbytes_of("text") == 0


def test_evicts_least_recently_used_until_bytes_fit():
    cache = FeatureCache(max_bytes=1000)
    for i in range(3):
        assert cache.put(key(i), block(300))
    assert cache.bytes_used == 900 and len(cache) == 3
    assert cache.get(key(0)) is not None  # 0 becomes most recently used; 1 is now the oldest
    assert cache.put(key(3), block(300))
    assert key(1) not in cache and key(0) in cache
    assert cache.lru_keys() == [key(2), key(0), key(3)]
    assert cache.stats.evictions == 1
    # A large entry pushes out as many old entries as needed.
    assert cache.put(key(4), block(800))
    assert cache.lru_keys() == [key(4)] and cache.bytes_used == 800
    assert cache.stats.evictions == 4


def test_hits_misses_and_replacement_accounting():
    cache = FeatureCache(max_bytes=1000)
    assert cache.get(key(0)) is None
    cache.put(key(0), block(400))
    cache.put(key(0), block(200))  # replacing an entry frees its old bytes
    assert cache.bytes_used == 200 and len(cache) == 1
    value = cache.get(key(0))
    assert value.numel() * 4 == 200
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_entry_larger_than_the_bound_is_not_stored_and_zero_disables():
    cache = FeatureCache(max_bytes=100)
    cache.put(key(0), block(40))
    assert not cache.put(key(1), block(400))
    assert key(0) in cache and cache.stats.rejected_too_large == 1
    disabled = FeatureCache(max_bytes=0)
    assert not disabled.put(key(0), block(4))
    assert disabled.get(key(0)) is None
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(max_bytes=-1)


def test_key_depends_on_every_component_and_tolerates_float_noise():
    base = key(1)
    assert key(1, stamps=[1.0 + 1e-13, 1.5]) == base  # same nanosecond
    variants = [
        key(1, stamps=[1.0, 1.6]),
        key(1, camera_ids=["cam", "other"]),
        key(1, height=112),
        key(1, width=112),
        key(1, model_id="m2"),
        key(1, variant="onnxruntime-cpu/float32"),
    ]
    assert len({base, *variants}) == 1 + len(variants)
    image = np.zeros((56, 84, 3), np.uint8)
    other = image.copy()
    other[8, 16] = 255  # a sampled pixel
    with_pixels = key(1, images=[image, image])
    assert with_pixels != base and with_pixels == key(1, images=[image.copy(), image])
    assert key(1, images=[image, other]) != with_pixels
    with pytest.raises(ValueError, match="camera ids"):
        FeatureKey.from_frames([1.0], ["a", "b"], 56, 56, "m")


def test_concurrent_puts_keep_the_byte_bound():
    cache = FeatureCache(max_bytes=4000)

    def worker(offset: int):
        for i in range(200):
            cache.put(key(offset * 1000 + i), block(400))
            cache.get(key(offset * 1000 + i // 2))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.bytes_used <= 4000
    assert cache.bytes_used == 400 * len(cache)
