"""Pretrained backbones of the image conditioners: open_clip CLIP models and timm DINOv2, built from weight files.

The architectures come from the libraries (no network needed); the weights from `ldm.weights` (local file or folder,
Hugging Face cache, or the hub). Loading is strict: a file for the wrong architecture fails loudly instead of leaving
layers random.
"""
from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from ldm.weights import resolve_file

OPENAI_CLIP_L14 = "timm/vit_large_patch14_clip_224.openai"
DINOV2_L14_REG4 = "timm/vit_large_patch14_reg4_dinov2.lvd142m"
# File names tried inside a folder or hub repo, in order; the OpenAI release file name comes last.
OPEN_CLIP_FILENAMES = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "ViT-L-14.pt"]
TIMM_FILENAMES = ["model.safetensors", "pytorch_model.bin", "dinov2_vitl14_reg4_pretrain.pth"]
# Metadata integers the OpenAI TorchScript release keeps next to the weights.
_OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a constants.pkl record; torch.load refuses them with weights_only."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, a torch pickle (plain or under 'state_dict' / 'model'), or a TorchScript
    archive (the OpenAI CLIP release), with a DataParallel 'module.' prefix removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        if _is_torchscript_archive(path):
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    state = {k: v for k, v in state.items() if k not in _OPENAI_METADATA_KEYS}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def resolve_open_clip_weights(source: str | os.PathLike, *, what: str, how_to: str,
                              cache_dir: str | os.PathLike | None = None) -> Path:
    return resolve_file(source, filenames=OPEN_CLIP_FILENAMES, what=what, how_to=how_to, cache_dir=cache_dir)


def resolve_timm_weights(source: str | os.PathLike, *, what: str, how_to: str,
                         cache_dir: str | os.PathLike | None = None) -> Path:
    return resolve_file(source, filenames=TIMM_FILENAMES, what=what, how_to=how_to, cache_dir=cache_dir)


def build_open_clip(arch: str | dict, quick_gelu: bool, weights_file: str | os.PathLike) -> nn.Module:
    """open_clip `CLIP` of architecture `arch` (a built-in name such as 'ViT-L-14', or a model config dict with
    embed_dim / vision_cfg / text_cfg) with `weights_file` loaded strictly, in eval mode.

    The OpenAI weights were trained with QuickGELU; the release loaded them through open_clip's OpenAI path, which
    builds QuickGELU models, so `quick_gelu=True` is what matches it.
    """
    import open_clip

    config = open_clip.get_model_config(arch) if isinstance(arch, str) else copy.deepcopy(arch)
    if config is None:
        raise ValueError(f"unknown open_clip architecture '{arch}'; choose one of open_clip.list_models()")
    config = {k: v for k, v in config.items() if k != "custom_text"}
    config["quick_gelu"] = quick_gelu
    model = open_clip.CLIP(**config)
    state = load_state_dict_file(weights_file)
    if "logit_scale" in state:  # stored as a scalar by some exporters and as shape (1,) by others
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_dinov2(arch: str, image_size: int, weights_file: str | os.PathLike) -> nn.Module:
    """timm DINOv2 ViT `arch` at `image_size` with `weights_file` loaded strictly, in eval mode.

    Accepts timm-format files (the hub's `timm/...` repos) and Meta's original DINOv2 files; timm's checkpoint filter
    converts the latter and resamples the 518-px position embedding to the model's grid with bicubic + antialias,
    the same interpolation the DINOv2 hub model applies at run time for its register variants.
    """
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = timm.create_model(arch, pretrained=False, img_size=image_size, num_classes=0)
    model.load_state_dict(checkpoint_filter_fn(load_state_dict_file(weights_file), model), strict=True)
    return model.eval()
