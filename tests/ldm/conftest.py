"""Tiny stand-ins for the pretrained conditioner weights, saved in the layouts the real ones come in.

Nothing is downloaded: the CLIP tokenizer is rebuilt from the BPE vocabulary open_clip bundles (the same vocabulary
and merges as `openai/clip-vit-large-patch14`), and the models are small random networks of the real architectures.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

import ldm  # noqa: F401  (imports utils first, so torchvision-dependent libraries import)

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "patch_size": 14, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
SMALL_DINO = "vit_small_patch14_reg4_dinov2"


@pytest.fixture(scope="session")
def tiny_open_clip_arch() -> dict:
    return TINY_OPEN_CLIP


@pytest.fixture(scope="session")
def small_dino_arch() -> str:
    return SMALL_DINO


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def clip_bpe_tokenizer():
    """HF CLIPTokenizer built from open_clip's bundled BPE file: vocab = 256 byte symbols, the same with '</w>',
    one entry per merge, then <|startoftext|> and <|endoftext|> (49408 ids, CLIP's order)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    # pad token as in openai/clip-vit-large-patch14's special_tokens_map.json: <|endoftext|>
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges, model_max_length=77,
                         pad_token="<|endoftext|>")


@pytest.fixture(scope="session")
def tiny_clip_text_folder(tmp_path_factory) -> Path:
    """A folder laid out like the `openai/clip-vit-large-patch14` repo: a full CLIPModel (text + vision) + tokenizer.

    `eos_token_id=2` as in the released config, so the pooled output is taken at the highest token id (first EOT).
    """
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("clip_text")
    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                     "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    clip_bpe_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_open_clip_file(tmp_path_factory) -> Path:
    """A tiny open_clip CLIP (QuickGELU, 224 px, patch 14 → 256 tokens) saved as open_clip_model.safetensors."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_OPEN_CLIP, quick_gelu=True)
    path = tmp_path_factory.mktemp("open_clip") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def small_dino_folder(tmp_path_factory) -> Path:
    """timm DINOv2 ViT-S/14-reg4 at 224 px saved as model.safetensors (the layout of the `timm/...` hub repos)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    model = timm.create_model(SMALL_DINO, pretrained=False, img_size=224, num_classes=0)
    folder = tmp_path_factory.mktemp("dino")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache that both the environment and huggingface_hub's resolved constant point at."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read once at import; patch the live value too
    return cache


@pytest.fixture
def add_to_hub_cache(hub_cache):
    """`add(repo_id, {name: file})` writes `models--owner--name/{refs/main, snapshots/<hash>/name…}` into the cache,
    the Hugging Face cache layout, and returns the snapshot folder."""

    def add(repo_id: str, files: dict[str, Path]) -> Path:
        commit = "0123456789abcdef0123456789abcdef01234567"
        repo_dir = hub_cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo_dir / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text(commit)
        for name, source in files.items():
            (snapshot / name).symlink_to(source)
        return snapshot

    return add
