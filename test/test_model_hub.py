# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints by Hub id, resolved against a pre-populated Hugging Face cache in offline mode (no network)."""

import hashlib
import shutil
from pathlib import Path

import pytest

from spatial_mllm_ros.cli import main as cli_main
from spatial_mllm_ros.model.hub import parse_hub_id, resolve_model_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_cache(cache, repo_id, source, commit=COMMIT, extra=()):
    """Lay ``source``'s files out the way huggingface_hub's cache stores a downloaded snapshot.

    ``models--{org}--{name}/blobs/<hash>``, ``snapshots/<commit>/<file>`` -> relative symlink to the
    blob, ``refs/main`` holding the commit.
    """
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in [*sorted(source.iterdir()), *extra]:
        if not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(path, root / "blobs" / digest)
        (snapshot / path.name).symlink_to(f"../../blobs/{digest}")
    (root / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch, fixtures_dir):
    cache = tmp_path / "hub"
    snapshot = populate_cache(cache, "Diankun/Spatial-MLLM-tiny", fixtures_dir / "spatial_mllm_tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache, snapshot


def test_huggingface_hub_reads_the_cache_layout(offline_cache):
    from huggingface_hub import scan_cache_dir

    cache, _ = offline_cache
    (repo,) = scan_cache_dir(cache).repos
    assert repo.repo_id == "Diankun/Spatial-MLLM-tiny" and repo.repo_type == "model"
    (revision,) = repo.revisions
    assert revision.commit_hash == COMMIT and "main" in revision.refs
    assert "model.safetensors" in {f.file_name for f in revision.files}


def test_hub_ids_resolve_from_the_cache_offline(offline_cache):
    _, snapshot = offline_cache
    assert resolve_model_path("Diankun/Spatial-MLLM-tiny") == snapshot
    assert resolve_model_path("Diankun/Spatial-MLLM-tiny@main") == snapshot
    assert resolve_model_path(f"Diankun/Spatial-MLLM-tiny@{COMMIT}") == snapshot


def test_missing_checkpoint_offline_says_what_to_do(offline_cache):
    with pytest.raises(
        FileNotFoundError, match=r"HF_HUB_OFFLINE is set.*Diankun/Other.*spatial-mllm-ros download"
    ):
        resolve_model_path("Diankun/Other")
    with pytest.raises(FileNotFoundError, match="not in"):
        resolve_model_path("Diankun/Spatial-MLLM-tiny@v9")


def test_parsing_and_local_directories_win(tmp_path, monkeypatch):
    assert parse_hub_id("Diankun/Spatial-MLLM-v1.1-Instruct-135K") == (
        "Diankun/Spatial-MLLM-v1.1-Instruct-135K",
        None,
    )
    assert parse_hub_id("org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    for bad in ("name", "/abs/path", "org/name/extra", "../x/y", "org/..", "org/name@", "a b/c"):
        assert parse_hub_id(bad) is None, bad
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve_model_path("org/name").resolve() == tmp_path / "org" / "name"
    assert resolve_model_path(Path("org/name")).resolve() == tmp_path / "org" / "name"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(FileNotFoundError, match="no local directory has that name"):
        resolve_model_path(Path("org/other"))  # a Path that does not exist is tried as a Hub id too


def test_spatialqa_and_download_take_a_hub_id(offline_cache, capsys):
    from spatial_mllm_ros.engine import SpatialQA

    _, snapshot = offline_cache
    qa = SpatialQA("Diankun/Spatial-MLLM-tiny", cache_bytes=0)
    try:
        assert qa.model_loaded and qa.model_id.startswith(COMMIT)
    finally:
        qa.close()
    assert cli_main(["download", "Diankun/Spatial-MLLM-tiny"]) == 0
    assert capsys.readouterr().out.strip() == str(snapshot)
    assert cli_main(["download", "Diankun/Missing"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert cli_main(["download", "not-an-id"]) == 2
