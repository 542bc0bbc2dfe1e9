"""Weight resolution when the hub is reachable: download only after a cache miss, failures become one clear line."""
from __future__ import annotations

import huggingface_hub
import huggingface_hub.errors
import pytest
import torch
from safetensors.torch import save_file

from ldm.backbones import load_state_dict_file
from ldm.weights import MissingWeightsError, resolve_file, resolve_folder

ARGS = {"what": "Test encoder (owner/model)", "how_to": "pass --weights PATH"}


class _NotInRepo(huggingface_hub.errors.RemoteEntryNotFoundError):
    """The hub's 404 for a file name the repo lacks, without an HTTP response to wrap."""

    def __init__(self):
        Exception.__init__(self, "404 Client Error: Entry Not Found")


def test_online_cache_miss_downloads_the_first_file_the_repo_has(hub_cache, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    def fake_download(repo_id, filename, cache_dir=None):
        calls.append(filename)
        if filename == "first.bin":
            raise _NotInRepo()
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = resolve_file("owner/model", filenames=["first.bin", "second.safetensors"], **ARGS)
    assert path == tmp_path / "second.safetensors" and calls == ["first.bin", "second.safetensors"]


def test_online_failures_are_one_clear_line(hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nretrying…")

    def snapshot(*args, local_files_only=False, **kwargs):
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        unreachable()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    with pytest.raises(MissingWeightsError) as err:
        resolve_file("owner/model", filenames=["model.safetensors"], **ARGS)
    assert str(err.value) == (
        "Test encoder (owner/model) weights not found: download of 'owner/model/model.safetensors' failed "
        "(ConnectionError: Failed to resolve 'huggingface.co'); pass --weights PATH")
    with pytest.raises(MissingWeightsError, match=r"download of 'owner/model' failed \(ConnectionError: Failed"):
        resolve_folder("owner/model", allow_patterns=["*.json"], **ARGS)


def test_local_paths_win_and_missing_ones_are_named(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"")
    assert resolve_file(tmp_path / "weights.pt", filenames=["model.safetensors"], **ARGS) == tmp_path / "weights.pt"
    assert resolve_folder(tmp_path, allow_patterns=[], **ARGS) == tmp_path
    with pytest.raises(MissingWeightsError, match=r"'\./missing\.pt' does not exist; pass --weights PATH"):
        resolve_file("./missing.pt", filenames=["model.safetensors"], **ARGS)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_state_dict_files_in_every_released_format(tmp_path):
    linear = torch.nn.Linear(3, 2)
    torch.jit.script(linear).save(str(tmp_path / "ViT-L-14.pt"))  # OpenAI's CLIP release is a TorchScript archive
    torch.save({"state_dict": {f"module.{k}": v for k, v in linear.state_dict().items()}}, tmp_path / "ddp.pt")
    save_file(linear.state_dict(), str(tmp_path / "model.safetensors"))
    for name in ("ViT-L-14.pt", "ddp.pt", "model.safetensors"):
        state = load_state_dict_file(tmp_path / name)
        assert sorted(state) == ["bias", "weight"], name
        assert torch.equal(state["weight"], linear.weight.detach()), name
