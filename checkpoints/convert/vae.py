"""Released stage-1 VAE key names ↔ `nsr.vae.TriplaneVAE` key names (standalone names, no `rec_model.` prefix).

Covers the Objaverse VAE (`manifest_vae_objaverse.json`, also the older 4-view / DiT2-B release) and the
ShapeNet-car VAE (`manifest_vae_shapenet_car.json`). Tensor shapes are identical on both sides: conversion is
renaming only. The one released entry without a counterpart is `decoder.w_avg`, a 512-zero buffer nothing reads
(spec §14.26): `to_ours` maps it to None, and `to_released_state_dict` puts the zeros back.
"""
from __future__ import annotations

import re

import torch

DROPPED = {"decoder.w_avg": (512,)}

# (released prefix, our prefix), most specific first on both sides. "{i}"/"{j}" stand for block indices. A rule
# ending in "." maps a prefix; otherwise it maps a whole name.
_PREFIXES = [
    # multi-view conv encoder
    ("encoder.down.{i}.block.{j}.", "encoder.down.{i}.blocks.{j}."),
    ("encoder.down.{i}.downsample.", "encoder.down.{i}.downsample."),
    ("encoder.mid.block_1.", "encoder.mid_block1."),
    ("encoder.mid.block_2.", "encoder.mid_block2."),
    ("encoder.mid.attn_1.transformer_blocks.0.attn1.to_out.0.", "encoder.mid_attention.attn_across_views.to_out."),
    ("encoder.mid.attn_1.transformer_blocks.0.attn2.to_out.0.", "encoder.mid_attention.attn_within_view.to_out."),
    ("encoder.mid.attn_1.transformer_blocks.0.attn1.", "encoder.mid_attention.attn_across_views."),
    ("encoder.mid.attn_1.transformer_blocks.0.attn2.", "encoder.mid_attention.attn_within_view."),
    ("encoder.mid.attn_1.transformer_blocks.0.ff.net.0.proj.", "encoder.mid_attention.ff.proj."),
    ("encoder.mid.attn_1.transformer_blocks.0.ff.net.2.", "encoder.mid_attention.ff.out."),
    ("encoder.mid.attn_1.transformer_blocks.0.norm{i}.", "encoder.mid_attention.norm{i}."),
    ("encoder.mid.attn_1.norm.", "encoder.mid_attention.norm."),
    ("encoder.mid.attn_1.proj_in.", "encoder.mid_attention.proj_in."),
    ("encoder.mid.attn_1.proj_out.", "encoder.mid_attention.proj_out."),
    ("encoder.fusion_layer.", "encoder.view_fusion."),
    ("encoder.conv_in.", "encoder.conv_in."),
    ("encoder.norm_out.", "encoder.norm_out."),
    ("encoder.conv_out.", "encoder.conv_out."),
    # DINOv2-style ViT encoder
    ("encoder.cls_token", "encoder.cls_token"),
    ("encoder.pos_embed", "encoder.pos_embed"),
    ("encoder.patch_embed.proj.", "encoder.patch_embed."),
    ("encoder.blocks.{i}.", "encoder.blocks.{i}."),
    ("encoder.norm.", "encoder.norm."),
    ("decoder.superresolution.ldm_downsample.", "encoder.to_latent."),
    # posterior
    ("decoder.superresolution.quant_conv.", "posterior_head.conv."),
    # latent embedding and transformers
    ("decoder.superresolution.ldm_upsample.proj.", "decoder.latent_embed.proj."),
    ("decoder.superresolution.ldm_upsample.", "decoder.latent_embed.linear."),
    ("decoder.vit_decoder.pos_embed", "decoder.transformer.pos_embed"),
    ("decoder.vit_decoder.blocks.{i}.adaLN_modulation.1.", "decoder.transformer.blocks.{i}.modulation."),
    ("decoder.vit_decoder.blocks.{i}.mlp.mlp.0.", "decoder.transformer.blocks.{i}.mlp.fc1."),
    ("decoder.vit_decoder.blocks.{i}.mlp.mlp.2.", "decoder.transformer.blocks.{i}.mlp.fc2."),
    ("decoder.vit_decoder.blocks.{i}.attn.", "decoder.transformer.blocks.{i}.attn."),
    ("decoder.vit_decoder.blocks.{i}.vit_blks.1.attn.norm1.",
     "decoder.transformer.stages.{i}.triplane_block.attn.norm."),
    ("decoder.vit_decoder.blocks.{i}.vit_blks.1.attn.attn.wq.",
     "decoder.transformer.stages.{i}.triplane_block.attn.attn.q."),
    ("decoder.vit_decoder.blocks.{i}.vit_blks.1.attn.attn.w_kv.",
     "decoder.transformer.stages.{i}.triplane_block.attn.attn.kv."),
    ("decoder.vit_decoder.blocks.{i}.vit_blks.1.attn.attn.proj.",
     "decoder.transformer.stages.{i}.triplane_block.attn.attn.proj."),
    ("decoder.vit_decoder.blocks.{i}.vit_blks.0.", "decoder.transformer.stages.{i}.plane_block."),
    ("decoder.vit_decoder.blocks.{i}.vit_blks.1.", "decoder.transformer.stages.{i}.triplane_block."),
    ("decoder.vit_decoder.blocks.{i}.skip_linear.", "decoder.transformer.stages.{i}.skip_proj."),
    ("decoder.vit_decoder.blocks.{i}.fusion.norm1.", "decoder.transformer.stages.{i}.fusion_norm."),
    ("decoder.vit_decoder.blocks.{i}.fusion.attn.wq.", "decoder.transformer.stages.{i}.fusion.q."),
    ("decoder.vit_decoder.blocks.{i}.fusion.attn.w_kv.", "decoder.transformer.stages.{i}.fusion.kv."),
    ("decoder.vit_decoder.blocks.{i}.fusion.attn.proj.", "decoder.transformer.stages.{i}.fusion.proj."),
    ("decoder.vit_decoder.norm.", "decoder.transformer.norm."),
    ("decoder.vit_decoder.cls_token", "decoder.transformer.unused_cls_token"),
    ("decoder.vit_decoder.patch_embed.proj.", "decoder.transformer.unused_patch_embed."),
    ("decoder.decoder_pred.", "decoder.unpatchify_proj."),
    # LDM conv upsampler
    ("decoder.superresolution.conv_sr.mid.block_1.", "decoder.upsampler.mid_block1."),
    ("decoder.superresolution.conv_sr.mid.block_2.", "decoder.upsampler.mid_block2."),
    ("decoder.superresolution.conv_sr.mid.attn_1.", "decoder.upsampler.mid_attention."),
    ("decoder.superresolution.conv_sr.up.{i}.block.{j}.", "decoder.upsampler.up.{i}.blocks.{j}."),
    ("decoder.superresolution.conv_sr.up.{i}.upsample.", "decoder.upsampler.up.{i}.upsample."),
    # roll-out conv upsampler
    ("decoder.superresolution.conv_sr.short_cut.", "decoder.upsampler.residual_proj."),
    ("decoder.superresolution.conv_sr.conv3D_0.roll_out_convs.", "decoder.upsampler.first_conv.conv."),
    ("decoder.superresolution.conv_sr.conv3D_0.roll_out_inplane_conv.", "decoder.upsampler.first_conv."),
    ("decoder.superresolution.conv_sr.conv3D_1.roll_out_convs.", "decoder.upsampler.rollout_conv.conv."),
    ("decoder.superresolution.conv_sr.conv_in.", "decoder.upsampler.conv_in."),
    ("decoder.superresolution.conv_sr.norm_out.", "decoder.upsampler.norm_out."),
    ("decoder.superresolution.conv_sr.conv_out.", "decoder.upsampler.conv_out."),
    # field MLP
    ("decoder.triplane_decoder.decoder.net.0.", "renderer.field.fc1."),
    ("decoder.triplane_decoder.decoder.net.2.", "renderer.field.fc2."),
]

# Renames inside a block, applied to what follows the matched prefix (first match).
_LEAVES = [
    ("nin_shortcut.", "shortcut."),
    ("ls1.gamma", "attn_scale"),
    ("ls2.gamma", "mlp_scale"),
    ("skip_linear.", "skip_proj."),
]


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(pattern + ("" if template.endswith(".") else "$"))


_RULES = [(_compile(rel), rel, _compile(ours), ours) for rel, ours in _PREFIXES]


def _convert(name: str, forward: bool) -> str:
    for rel_re, rel, ours_re, ours in _RULES:
        src_re, dst = (rel_re, ours) if forward else (ours_re, rel)
        m = src_re.match(name)
        if m is None:
            continue
        head = dst.format(**m.groupdict())
        rest = name[m.end():]
        for rel_leaf, ours_leaf in _LEAVES:
            src_leaf, dst_leaf = (rel_leaf, ours_leaf) if forward else (ours_leaf, rel_leaf)
            if rest.startswith(src_leaf):
                rest = dst_leaf + rest[len(src_leaf):]
                break
        return head + rest
    side = "released" if forward else "our"
    raise KeyError(f"no VAE key rule matches {side} name {name!r}")


def to_ours(released_name: str) -> str | None:
    """Released standalone VAE key → our key; None for entries we drop (`DROPPED`)."""
    if released_name in DROPPED:
        return None
    return _convert(released_name, forward=True)


def to_released(our_name: str) -> str:
    """Our key → released standalone VAE key."""
    return _convert(our_name, forward=False)


def to_our_state_dict(released: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Rename a released VAE state dict (keys optionally prefixed, e.g. `rec_model.` in a joint file; other keys
    are ignored) into ours."""
    out = {}
    for key, value in released.items():
        if not key.startswith(prefix):
            continue
        ours = to_ours(key[len(prefix):])
        if ours is not None:
            out[ours] = value
    return out


def to_released_state_dict(ours: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Our state dict → the released layout, including the dropped zero buffers."""
    out = {prefix + to_released(k): v for k, v in ours.items()}
    for name, shape in DROPPED.items():
        out[prefix + name] = torch.zeros(shape)
    return out
