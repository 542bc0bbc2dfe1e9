"""Checkpoint resolution: local paths, the local Hugging Face cache, and the offline error."""
import pytest

from checkpoints.hub import RELEASED_FILES, CheckpointNotFoundError, resolve_checkpoint


def test_local_path_is_returned_unchanged(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    assert resolve_checkpoint(f) == f


def test_released_alias_found_in_local_cache(tmp_path, monkeypatch, make_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = make_hub_cache(tmp_path, RELEASED_FILES["released-t23d"])
    assert resolve_checkpoint("released-t23d", cache_dir=tmp_path) == target
    # the hub path itself works as well as the alias
    assert resolve_checkpoint(RELEASED_FILES["released-t23d"], cache_dir=tmp_path) == target


def test_missing_released_checkpoint_offline_names_file_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as err:
        resolve_checkpoint("released-i23d", cache_dir=tmp_path)
    msg = str(err.value)
    assert RELEASED_FILES["released-i23d"] in msg and "hf download" in msg and "--ckpt" in msg


def test_unknown_name_lists_aliases(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="released-i23d, released-t23d"):
        resolve_checkpoint(tmp_path / "nope")
