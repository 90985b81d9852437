# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints by local directory or by Hugging Face Hub id ``org/name[@revision]``.

A robot is often configured with ``Diankun/Spatial-MLLM-v1.1-Instruct-135K`` rather than a path.
Resolution goes through ``huggingface_hub.snapshot_download`` and its local cache, restricted to the
files a checkpoint needs (safetensors, JSON configs, tokenizer files): pickle-based weights are
never fetched. ``HF_HUB_OFFLINE`` (read at call time) keeps it to the cache, with a clear message
when the files are not there; ``HF_HUB_CACHE`` (also read at call time) moves the cache. A
directory that exists always wins over a Hub id of the same spelling.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})"
    r"(?:@(?P<revision>[A-Za-z0-9][A-Za-z0-9_./-]{0,127}))?$"
)
CHECKPOINT_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)
TRUE_WORDS = {"1", "on", "yes", "true"}


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) for ``org/name[@revision]``, None for anything else."""
    match = HUB_ID.match(spec)
    if match is None or ".." in spec:
        return None
    return match.group("repo"), match.group("revision")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for the local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path | None:
    """The cache to use: the argument, else ``HF_HUB_CACHE`` now, else huggingface_hub's default."""
    chosen = cache_dir or os.environ.get("HF_HUB_CACHE")
    return Path(chosen) if chosen else None


def fetch_checkpoint(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
) -> Path:
    """The checkpoint's files from the cache (or the Hub when online); returns their folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    offline = hub_offline()
    cache = hub_cache_dir(cache_dir)
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            local_dir=local_dir,
            allow_patterns=list(CHECKPOINT_PATTERNS),
            local_files_only=offline,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        where = cache or "the default Hugging Face cache"
        name = f"{repo_id}@{revision}" if revision else repo_id
        reason = "HF_HUB_OFFLINE is set and " if offline else ""
        raise FileNotFoundError(
            f"{reason}checkpoint {name} is not in {where} (and no local directory has that name); "
            f"run `spatial-mllm-ros download {name}` where the Hub is reachable, or give a directory "
            f"({type(error).__name__})"
        ) from None
    return Path(folder)


def resolve_model_path(spec: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local checkpoint directory for ``spec``: an existing directory as is, a Hub id through the cache."""
    path = Path(spec)
    if path.exists():
        return path
    parsed = parse_hub_id(str(spec))
    if parsed is None:
        return path  # the caller reports the missing directory
    return fetch_checkpoint(parsed[0], parsed[1], cache_dir)


def main(argv: list[str] | None = None) -> int:
    """``spatial-mllm-ros download ID [DIR] [--cache-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="spatial-mllm-ros download", description=__doc__.splitlines()[0])
    parser.add_argument("id", help="Hub id org/name[@revision], e.g. Diankun/Spatial-MLLM-v1.1-Instruct-135K")
    parser.add_argument(
        "dir",
        nargs="?",
        default=None,
        help="copy the files into this folder (default: keep them in the Hub cache only)",
    )
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    args = parser.parse_args(argv)
    parsed = parse_hub_id(args.id)
    if parsed is None:
        print(f"download: {args.id!r} is not a Hub id of the form org/name[@revision]", file=sys.stderr)
        return 2
    try:
        folder = fetch_checkpoint(parsed[0], parsed[1], args.cache_dir, args.dir)
    except (FileNotFoundError, OSError, ValueError) as error:
        print(f"download: {error}", file=sys.stderr)
        return 1
    print(folder)
    return 0
