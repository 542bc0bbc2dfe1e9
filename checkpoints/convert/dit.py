"""Released ↔ ours key names for the stage-2 denoisers (`ddpm_model.` in the joint checkpoints): the T23D and I23D
DiTs and the ShapeNet/FFHQ UNet.

Names are standalone (no `ddpm_model.` prefix). Each rule pairs a released pattern with ours; `{i}`, `{j}`, `{k}`
stand for indices and `{p}` for `weight` or `bias`. The maps are total and one to one over the manifests: an unknown
name raises `KeyError`, nothing is dropped. The I23D tensors that the released forward never reads map to
`release_unused.*`, which only the release preset (`keep_released_unused`) holds.
"""
from __future__ import annotations

import functools
import re

import torch
from torch import nn

from guided_diffusion.config import DenoiserArch

JOINT_PREFIX = "ddpm_model."

_COMMON = [
    ("pos_embed", "tokenizer.pos_embed"),
    ("ema_latent_std", "latent_std"),
    ("ema_latent_mean", "latent_mean"),
    ("x_embedder.proj.{p}", "tokenizer.proj.{p}"),
    ("t_embedder.mlp.0.{p}", "time_embed.fc1.{p}"),
    ("t_embedder.mlp.2.{p}", "time_embed.fc2.{p}"),
    ("blocks.{i}.attn.qkv.{p}", "blocks.{i}.attn.qkv.{p}"),
    ("blocks.{i}.attn.proj.{p}", "blocks.{i}.attn.proj.{p}"),
    ("blocks.{i}.mlp.mlp.0.weight", "blocks.{i}.mlp.fc1.weight"),
    ("blocks.{i}.mlp.mlp.2.weight", "blocks.{i}.mlp.fc2.weight"),
    ("blocks.{i}.cross_attn.to_q.weight", "blocks.{i}.cross_attn.to_q.weight"),
    ("blocks.{i}.cross_attn.to_k.weight", "blocks.{i}.cross_attn.to_k.weight"),
    ("blocks.{i}.cross_attn.to_v.weight", "blocks.{i}.cross_attn.to_v.weight"),
    ("blocks.{i}.cross_attn.to_out.0.{p}", "blocks.{i}.cross_attn.to_out.{p}"),
    ("final_layer.linear.{p}", "final.linear.{p}"),
]

RULES: dict[DenoiserArch, list[tuple[str, str]]] = {
    DenoiserArch.DIT_T23D: _COMMON + [
        ("clip_text_proj.y_proj.fc1.{p}", "context_proj.fc1.{p}"),
        ("clip_text_proj.y_proj.fc2.{p}", "context_proj.fc2.{p}"),
        ("blocks.{i}.adaLN_modulation.1.{p}", "blocks.{i}.modulation.{p}"),
        ("final_layer.adaLN_modulation.1.{p}", "final.modulation.{p}"),
    ],
    DenoiserArch.DIT_I23D: _COMMON + [
        ("adaLN_modulation.1.{p}", "modulation.{p}"),
        ("cap_embedder.0.{p}", "pooled_embed.norm.{p}"),
        ("cap_embedder.1.{p}", "pooled_embed.linear.{p}"),
        ("attention_y_norm.weight", "context_norm.weight"),
        ("dino_proj.y_proj.fc1.{p}", "dino_proj.fc1.{p}"),
        ("dino_proj.y_proj.fc2.{p}", "dino_proj.fc2.{p}"),
        ("blocks.{i}.norm1.weight", "blocks.{i}.norm1.weight"),
        ("blocks.{i}.norm2.weight", "blocks.{i}.norm2.weight"),
        ("blocks.{i}.attn.q_norm.weight", "blocks.{i}.attn.q_norm.weight"),
        ("blocks.{i}.attn.k_norm.weight", "blocks.{i}.attn.k_norm.weight"),
        ("blocks.{i}.cross_attn.q_norm.weight", "blocks.{i}.cross_attn.q_norm.weight"),
        ("blocks.{i}.cross_attn.k_norm.weight", "blocks.{i}.cross_attn.k_norm.weight"),
        ("blocks.{i}.scale_shift_table", "blocks.{i}.modulation_table"),
        ("final_layer.scale_shift_table", "final.modulation_table"),
        ("clip_spatial_proj.y_proj.fc1.{p}", "release_unused.clip_spatial_proj.fc1.{p}"),
        ("clip_spatial_proj.y_proj.fc2.{p}", "release_unused.clip_spatial_proj.fc2.{p}"),
        ("blocks.{i}.attention_y_norm.weight", "release_unused.block_context_norms.{i}.weight"),
    ],
}


def _unet_rules() -> list[tuple[str, str]]:
    """Stage prefixes × the layers a stage can hold ({i}, {j}: stage and layer index; {k}: transformer block)."""
    layers = [
        ("in_layers.0.{p}", "norm1.{p}"), ("in_layers.2.{p}", "conv1.{p}"), ("emb_layers.1.{p}", "emb_proj.{p}"),
        ("out_layers.0.{p}", "norm2.{p}"), ("out_layers.3.{p}", "conv2.{p}"), ("skip_connection.{p}", "skip.{p}"),
        ("norm.{p}", "norm.{p}"), ("proj_in.{p}", "proj_in.{p}"), ("proj_out.{p}", "proj_out.{p}"),
    ]
    for released, ours in (("attn1", "self_attn"), ("attn2", "cross_attn")):
        layers += [(f"transformer_blocks.{{k}}.{released}.to_{w}.weight", f"blocks.{{k}}.{ours}.to_{w}.weight")
                   for w in "qkv"]
        layers.append((f"transformer_blocks.{{k}}.{released}.to_out.0.{{p}}", f"blocks.{{k}}.{ours}.to_out.{{p}}"))
    layers += [("transformer_blocks.{k}.ff.net.0.proj.{p}", "blocks.{k}.ff.proj.{p}"),
               ("transformer_blocks.{k}.ff.net.2.{p}", "blocks.{k}.ff.out.{p}")]
    layers += [(f"transformer_blocks.{{k}}.norm{n}.{{p}}", f"blocks.{{k}}.norm{n}.{{p}}") for n in (1, 2, 3)]
    top = [
        ("mixing_logit", "mixing_logit"),
        ("ema_latent_std", "latent_std"),
        ("ema_latent_mean", "latent_mean"),
        ("time_embed.0.{p}", "time_embed.fc1.{p}"),
        ("time_embed.2.{p}", "time_embed.fc2.{p}"),
        ("out.0.{p}", "out_norm.{p}"),
        ("out.2.{p}", "out_conv.{p}"),
    ]
    # The input conv and Downsample (`op`) only occur in input stages, Upsample (`conv`) only in output stages.
    stages = [("input_blocks.{i}.{j}", "down.{i}.{j}", [("{p}", "{p}"), ("op.{p}", "conv.{p}")]),
              ("middle_block.{j}", "mid.{j}", []),
              ("output_blocks.{i}.{j}", "up.{i}.{j}", [("conv.{p}", "conv.{p}")])]
    return top + [(f"{rs}.{rl}", f"{os}.{ol}") for rs, os, extra in stages for rl, ol in layers + extra]


RULES[DenoiserArch.UNET] = _unet_rules()


def _compile(pattern: str) -> tuple[re.Pattern, str]:
    regex = re.escape(pattern).replace(r"\{p\}", r"(?P<p>weight|bias)")
    regex = re.sub(r"\\\{([ijk])\\\}", r"(?P<\1>\\d+)", regex)
    return re.compile(regex + "$"), pattern


@functools.cache
def _tables(arch: DenoiserArch) -> tuple[list, list]:
    rules = RULES[arch]
    forward = [(_compile(rel)[0], ours) for rel, ours in rules]
    backward = [(_compile(ours)[0], rel) for rel, ours in rules]
    return forward, backward


def _apply(name: str, table: list, arch: DenoiserArch) -> str:
    for regex, template in table:
        m = regex.match(name)
        if m:
            return template.format(**m.groupdict())
    raise KeyError(f"{name!r} has no {DenoiserArch(arch).value} mapping")


def to_ours(name: str, arch: DenoiserArch | str) -> str:
    """Released standalone key → our key."""
    return _apply(name, _tables(DenoiserArch(arch))[0], arch)


def to_released(name: str, arch: DenoiserArch | str) -> str:
    """Our key → released standalone key."""
    return _apply(name, _tables(DenoiserArch(arch))[1], arch)


def released_to_ours(state_dict: dict[str, torch.Tensor], arch: DenoiserArch | str,
                     prefix: str = "") -> dict[str, torch.Tensor]:
    """Take the keys that start with `prefix` (e.g. `JOINT_PREFIX` for a joint file) and rename them."""
    return {to_ours(k[len(prefix):], arch): v for k, v in state_dict.items() if k.startswith(prefix)}


def ours_to_released(state_dict: dict[str, torch.Tensor], arch: DenoiserArch | str,
                     prefix: str = "") -> dict[str, torch.Tensor]:
    """Our state dict in the released layout, keys prefixed with `prefix`."""
    return {prefix + to_released(k, arch): v for k, v in state_dict.items()}


def load_released(model: nn.Module, state_dict: dict[str, torch.Tensor], arch: DenoiserArch | str,
                  prefix: str = JOINT_PREFIX) -> None:
    """Strictly load a released (joint or standalone, per `prefix`) state dict into our denoiser: unlike the
    original loader, a missing, unexpected or mis-shaped key is an error."""
    model.load_state_dict(released_to_ours(state_dict, arch, prefix), strict=True)
