"""Pretrained CLIP + DINOv2 image conditioner and the CLIP zero-shot conditioners, on small random architectures."""
from __future__ import annotations

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F

from ldm import MissingWeightsError, build_conditioner
from ldm.backbones import DINOV2_L14_REG4, OPENAI_CLIP_L14, build_dinov2, load_state_dict_file
from ldm.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, resize_like_kornia


@pytest.fixture(scope="module")
def image_conditioner(tiny_open_clip_arch, small_dino_arch, tiny_open_clip_file, small_dino_folder):
    return build_conditioner("clip-dino-image", clip_weights=str(tiny_open_clip_file),
                             dino_weights=str(small_dino_folder), clip_arch=tiny_open_clip_arch,
                             dino_arch=small_dino_arch)


def _normalised(unit, mean, std):
    return (unit - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_outputs_equal_the_libraries_own_forward(image_conditioner, tiny_open_clip_arch, small_dino_arch,
                                                 tiny_open_clip_file, small_dino_folder):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    out = image_conditioner(images)
    assert out["crossattn"].shape == (2, 256, 64 + 384) and out["vector"].shape == (2, 32)
    assert (image_conditioner.context_dim, image_conditioner.vector_dim, image_conditioner.num_tokens) == (448, 32, 256)

    unit = (resize_like_kornia(images, (224, 224)) + 1) / 2
    clip = open_clip.CLIP(**tiny_open_clip_arch, quick_gelu=True).eval()
    clip.load_state_dict(load_state_dict_file(tiny_open_clip_file))
    dino = timm.create_model(small_dino_arch, img_size=224, num_classes=0).eval()
    dino.load_state_dict(load_state_dict_file(small_dino_folder / "model.safetensors"))
    with torch.no_grad():
        clip_in = _normalised(unit, CLIP_MEAN, CLIP_STD)
        vector = clip.encode_image(clip_in)
        clip.visual.output_tokens = True
        clip_tokens = clip.visual(clip_in)[1]
        dino_tokens = dino.forward_features(_normalised(unit, IMAGENET_MEAN, IMAGENET_STD))[:, 1 + 4:]
    torch.testing.assert_close(out["vector"], vector, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["crossattn"][..., :64], clip_tokens, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["crossattn"][..., 64:], dino_tokens, rtol=0, atol=1e-6)
    # CLIP patch tokens are taken after ln_post (open_clip >= 2.23): per-token LayerNorm statistics
    ln = clip.visual.ln_post
    normed = (out["crossattn"][..., :64] - ln.bias) / ln.weight
    torch.testing.assert_close(normed.mean(-1), torch.zeros(2, 256), rtol=0, atol=1e-4)


def test_frozen_and_null_condition(image_conditioner):
    assert not image_conditioner.trainable and not any(p.requires_grad for p in image_conditioner.parameters())
    image_conditioner.train()
    assert not image_conditioner.dino.training and not image_conditioner.clip_visual.training
    null = image_conditioner.null_condition(2)
    assert null["crossattn"].shape == (2, 256, 448) and not null["crossattn"].any()
    assert image_conditioner.describe()["name"] == "clip-dino-image"
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        image_conditioner(torch.zeros(2, 256, 256))


def test_meta_dinov2_file_is_converted_like_the_hub_model(tmp_path, small_dino_arch, small_dino_folder):
    """Meta's DINOv2 files hold a 37×37 (518 px) position grid with the CLS position in front; the DINOv2 hub model
    resamples it at run time with bicubic + antialias to the input's grid, and adds the CLS position to CLS."""
    timm_state = load_state_dict_file(small_dino_folder / "model.safetensors")
    torch.manual_seed(3)
    grid = torch.randn(1, 37 * 37, 384)
    cls_pos = torch.randn(1, 1, 384)
    meta = {k: v for k, v in timm_state.items() if k not in ("cls_token", "reg_token", "pos_embed")}
    meta.update({"cls_token": timm_state["cls_token"] - cls_pos, "register_tokens": timm_state["reg_token"],
                 "pos_embed": torch.cat([cls_pos, grid], dim=1), "mask_token": torch.zeros(1, 384)})
    torch.save(meta, tmp_path / "dinov2_vits14_reg4_pretrain.pth")

    model = build_dinov2(small_dino_arch, 224, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    expected_grid = F.interpolate(grid.reshape(1, 37, 37, 384).permute(0, 3, 1, 2), size=(16, 16), mode="bicubic",
                                  antialias=True).permute(0, 2, 3, 1).reshape(1, 256, 384)
    torch.testing.assert_close(model.pos_embed.detach(), expected_grid, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.cls_token.detach(), timm_state["cls_token"], rtol=0, atol=1e-6)
    assert torch.equal(model.reg_token.detach(), timm_state["reg_token"])


def test_hub_ids_resolve_through_the_cache(add_to_hub_cache, tiny_open_clip_arch, small_dino_arch,
                                           tiny_open_clip_file, small_dino_folder, image_conditioner):
    add_to_hub_cache(OPENAI_CLIP_L14, {"open_clip_model.safetensors": tiny_open_clip_file})
    add_to_hub_cache(DINOV2_L14_REG4, {"model.safetensors": small_dino_folder / "model.safetensors"})
    cached = build_conditioner("clip-dino-image", clip_arch=tiny_open_clip_arch, dino_arch=small_dino_arch)
    images = torch.zeros(1, 3, 224, 224)
    torch.testing.assert_close(cached(images), image_conditioner(images), rtol=0, atol=0)


def test_missing_weights_error_text(hub_cache, tiny_open_clip_arch, small_dino_arch, tiny_open_clip_file):
    with pytest.raises(MissingWeightsError) as err:
        build_conditioner("clip-dino-image", clip_weights=str(tiny_open_clip_file), clip_arch=tiny_open_clip_arch,
                          dino_arch=small_dino_arch)
    assert str(err.value) == (
        f"DINOv2 image encoder (timm/vit_large_patch14_reg4_dinov2.lvd142m) weights not found: "
        f"'timm/vit_large_patch14_reg4_dinov2.lvd142m' is not a local path and is not in the Hugging Face cache "
        f"({hub_cache}) with HF_HUB_OFFLINE=1; download with `hf download timm/vit_large_patch14_reg4_dinov2.lvd142m` "
        f"(read from the Hugging Face cache when offline) or pass --dino-weights PATH to a local weight file or folder")
    with pytest.raises(MissingWeightsError, match=r"folder '.*' holds none of open_clip_model.safetensors"):
        build_conditioner("clip-dino-image", clip_weights=str(hub_cache), clip_arch=tiny_open_clip_arch)


def test_zeroshot_text_and_image_share_the_scaled_clip_space(tiny_open_clip_arch, tiny_open_clip_file):
    text = build_conditioner("clip-zeroshot-text", weights=str(tiny_open_clip_file), arch=tiny_open_clip_arch)
    image = build_conditioner("clip-zeroshot-image", weights=str(tiny_open_clip_file), arch=tiny_open_clip_arch)
    clip = open_clip.CLIP(**tiny_open_clip_arch, quick_gelu=True).eval()
    clip.load_state_dict(load_state_dict_file(tiny_open_clip_file))

    prompts = ["a red car", "a wooden chair"]
    out_text = text(prompts)
    with torch.no_grad():
        expected = F.normalize(clip.encode_text(open_clip.get_tokenizer("ViT-L-14")(prompts)), dim=-1) * 18.4
    assert out_text["crossattn"].shape == (2, 1, 32) and out_text["vector"].shape == (2, 32)
    torch.testing.assert_close(out_text["vector"], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out_text["crossattn"][:, 0], out_text["vector"], rtol=0, atol=0)

    images = torch.rand(2, 3, 128, 128) * 2 - 1
    unit = (F.interpolate(images, size=(224, 224), mode="bicubic", align_corners=True) + 1) / 2  # upscale: no blur
    with torch.no_grad():
        expected = F.normalize(clip.encode_image(_normalised(unit, CLIP_MEAN, CLIP_STD)), dim=-1) * 18.4
    torch.testing.assert_close(image(images)["vector"], expected, rtol=0, atol=1e-5)
    assert image.num_tokens == text.num_tokens == 1
    assert image.describe()["antialias"] is False
