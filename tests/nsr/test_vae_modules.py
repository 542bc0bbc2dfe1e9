"""VAE building blocks and the tiny model end to end: layouts, attention structure, shapes, gradients."""
import math

import pytest
import torch
from torch import nn

from nsr.cameras import orbit_cameras
from nsr.config import vae_config
from nsr.decoder import RollOutConv, RollOutUpsampler, TriplaneDiT, sincos_table
from nsr.encoder import MultiViewConvEncoder
from nsr.posterior import GaussianPosteriorHead, Posterior
from nsr.rendering.patches import PatchLayout
from nsr.vae import TriplaneVAE
from nsr.vit_blocks import TriplaneAxisAttention, uvit_forward


def _randomise_zero_inits(module: nn.Module):
    """Zero-initialised output layers make attention/adaLN a no-op at init; give them weights so tests see them."""
    g = torch.Generator().manual_seed(0)
    for name, p in module.named_parameters():
        if ("proj_out" in name or "modulation" in name or "skip_proj" in name) and p.abs().max() == 0:
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = TriplaneVAE(vae_config("tiny")).eval()
    _randomise_zero_inits(model)
    return model


def _batch(views=2, targets=3, res=64, render=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "enc_input": torch.randn(1, views, 10, res, res, generator=g),
        "target_cameras": orbit_cameras(torch.arange(targets) * 100.0, [15.0] * targets, 1.8, 1.389)[None],
        "target_rgb": torch.zeros(1, targets, 3, render, render),
    }


def test_posterior_layout_is_channel_major_and_plane_fastest():
    mean = torch.arange(4 * 3 * 4, dtype=torch.float32).reshape(1, 4, 3, 4)
    post = Posterior(mean, torch.zeros_like(mean), (2, 2))
    latent = post.latent(sample=False)
    assert latent.shape == (1, 12, 2, 2)
    for c in range(4):
        for n in range(3):
            assert torch.equal(latent[0, c * 3 + n].reshape(-1), mean[0, c, n])
    back = latent.reshape(1, 4, 3, 4)
    assert torch.equal(back, mean)


def test_posterior_head_split_soft_clamp_sampling_and_kl():
    head = GaussianPosteriorHead(latent_channels=4)
    assert head.conv.weight.shape == (24, 8, 1, 1) and head.conv.groups == 3
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.copy_(torch.cat([torch.full((12,), 0.5), torch.full((12,), 100.0)]))
    post = head(torch.zeros(2, 24, 4, 4))
    assert post.mean.shape == (2, 4, 3, 16)
    torch.testing.assert_close(post.mean, torch.full_like(post.mean, 0.5))
    torch.testing.assert_close(post.logvar, torch.full_like(post.logvar, 20 * math.tanh(5.0)))  # soft clamp
    standard = Posterior(torch.zeros(1, 4, 3, 16), torch.zeros(1, 4, 3, 16), (4, 4))
    assert float(standard.kl()) == 0.0
    torch.testing.assert_close(Posterior(torch.ones(1, 4, 3, 16), torch.zeros(1, 4, 3, 16), (4, 4)).kl(),
                               torch.tensor([0.5 * 192]))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(standard.latent(generator=g1), standard.latent(generator=g2))


def test_multiview_encoder_is_invariant_to_view_order(tiny):
    x = _batch(views=3, res=32)["enc_input"]
    a = tiny.encoder(x)
    b = tiny.encoder(x[:, [2, 0, 1]])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert a.shape == (1, 24, 8, 8)
    # the views do talk to each other: changing one view changes the others' features
    per_view = tiny.encoder.per_view(x)
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(tiny.encoder.per_view(x2)[:, 1], per_view[:, 1])


def test_conv_view_fusion_concatenates_views_in_order():
    torch.manual_seed(0)
    cfg = vae_config("tiny", {"encoder": {"view_fusion": "conv", "num_views": 2}}).encoder
    enc = MultiViewConvEncoder(cfg, 24).eval()
    x = torch.randn(2, 2, 10, 32, 32)
    per_view = enc.per_view(x)
    torch.testing.assert_close(enc(x), enc.view_fusion(torch.cat([per_view[:, 0], per_view[:, 1]], 1)))
    with pytest.raises(ValueError, match="exactly 2 views"):
        enc(torch.randn(1, 3, 10, 32, 32))


def test_dit_even_blocks_stay_within_a_plane_odd_blocks_mix():
    torch.manual_seed(0)
    dit = TriplaneDiT(width=32, depth=1, num_heads=2, tokens_per_side=2).eval()
    _randomise_zero_inits(dit)
    cond = torch.randn(1, 12, 32)
    changed = cond.clone()
    changed[:, 4:8] += 1.0  # plane 1
    a, b = dit(cond), dit(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])  # plane 0 untouched by an in-plane block
    assert not torch.allclose(a[:, 4:8], b[:, 4:8])
    dit2 = TriplaneDiT(width=32, depth=2, num_heads=2, tokens_per_side=2).eval()
    _randomise_zero_inits(dit2)
    assert not torch.allclose(dit2(cond)[:, :4], dit2(changed)[:, :4])


def test_dit_starts_as_identity_on_its_position_table():
    dit = TriplaneDiT(width=32, depth=2, num_heads=2, tokens_per_side=2)
    out = dit(torch.randn(3, 12, 32))
    torch.testing.assert_close(out, dit.pos_embed.expand(3, -1, -1))


def test_sincos_table_follows_the_mae_layout():
    table = sincos_table(8, 3, 2)  # 3 rows, 2 columns
    assert table.shape == (6, 8)
    token = 1 * 2 + 1  # row 1, column 1
    omega = torch.tensor([1.0, 1.0 / 100.0])
    col = torch.cat([torch.sin(omega), torch.cos(omega)])
    torch.testing.assert_close(table[token, :4], col)
    torch.testing.assert_close(table[token, 4:], col)
    torch.testing.assert_close(table[4, 4:6], torch.sin(2 * omega))  # row 2 lives in the second half


def test_axis_attention_matches_a_per_token_loop():
    torch.manual_seed(0)
    attn = TriplaneAxisAttention(dim=8, num_heads=2)
    b, p, c = 2, 3, 8
    x = torch.randn(b, 3, p * p, c)
    out = attn(x)
    grid = x.reshape(b, 3, p, p, c)
    for bi in range(b):
        for i in range(3):
            for r in range(p):
                for col in range(p):
                    ctx = torch.cat([grid[bi, (i + 1) % 3, r], grid[bi, (i + 2) % 3, :, col]])  # row, column
                    q = attn.q(grid[bi, i, r, col]).reshape(2, 4)
                    k, v = attn.kv(ctx).reshape(2 * p, 2, 2, 4).unbind(1)
                    w = torch.softmax(torch.einsum("hd,lhd->hl", q, k) / 2.0, -1)
                    ref = attn.proj(torch.einsum("hl,lhd->hd", w, v).reshape(-1))
                    torch.testing.assert_close(out[bi, i, r * p + col], ref, atol=1e-5, rtol=1e-5)


def test_rollout_conv_matches_explicit_concatenation():
    torch.manual_seed(0)
    conv = RollOutConv(6, 6)
    x = torch.randn(1, 6, 4, 4)
    planes = x.reshape(1, 3, 2, 4, 4)
    parts = []
    for i in range(3):
        parts += [planes[:, i], planes[:, (i + 1) % 3].mean(-1, keepdim=True).expand(-1, -1, 4, 4),
                  planes[:, (i + 2) % 3].mean(-2, keepdim=True).expand(-1, -1, 4, 4)]
    torch.testing.assert_close(conv(x), conv.conv(torch.cat(parts, 1)))


def test_rollout_upsampler_shapes_and_residual_channel_reading():
    torch.manual_seed(0)
    up = RollOutUpsampler(in_channels=4, out_channels=2, resolution=16, rollout_first_conv=False)
    x = torch.randn(1, 12, 8, 8)
    assert up(x).shape == (1, 6, 16, 16)
    with torch.no_grad():  # only the residual: the main branch is zeroed
        up.first_conv.weight.zero_()
        up.first_conv.bias.zero_()
        up.rollout_conv.conv.weight.zero_()
        up.rollout_conv.conv.bias.zero_()
        up.residual_proj.weight.copy_(torch.eye(2, 4))
        up.residual_proj.bias.zero_()
    up.resolution = 8
    out = up(x)
    # residual plane n, channel j = input channel j·3 + n (channel-major reading of a plane-major tensor)
    for n in range(3):
        for j in range(2):
            torch.testing.assert_close(out[0, n * 2 + j], x[0, j * 3 + n])


def test_uvit_forward_pairs_skips_first_in_last_out():
    calls = []

    class Tag(nn.Module):
        def __init__(self, i):
            super().__init__()
            self.i = i

        def forward(self, x):
            calls.append(self.i)
            return x + 10 ** self.i

    class Skip(nn.Module):
        def forward(self, x):
            half = x.shape[-1] // 2
            return x[..., half:]  # the popped skip itself

    blocks = [Tag(i) for i in range(4)]
    skips = [None, None, Skip(), Skip()]
    out = uvit_forward(blocks, torch.zeros(1, 1), skips)
    # x0=0 → b0: 1 (pushed) → b1: 11 → +skip(1) = 12 → b2: 112 → +skip(0) = 112 → b3: 1112
    assert calls == [0, 1, 2, 3] and float(out) == 1112


def test_tiny_vae_end_to_end_shapes(tiny):
    batch = _batch()
    with torch.no_grad():
        post = tiny.encode(batch["enc_input"])
        assert post.mean.shape == (1, 4, 3, 256) and post.logvar.shape == (1, 4, 3, 256)
        latent = post.latent(sample=False)
        assert latent.shape == (1, 12, 16, 16)
        tri = tiny.decode(latent)
        assert tri.shape == (1, 96, 32, 32)
        out = tiny.render(tri, batch["target_cameras"], 16, deterministic=True)
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "rgb": (1, 3, 3, 16, 16), "depth": (1, 3, 1, 16, 16), "alpha": (1, 3, 1, 16, 16),
            "weights": (1, 3, 1, 16, 16)}
        assert out["rgb"].min() >= -1.01 and out["rgb"].max() <= 1.01
        q = tiny.query(tri, torch.rand(1, 100, 3) - 0.5)
        assert q["sigma"].shape == (1, 100, 1) and q["rgb"].shape == (1, 100, 3)


def test_tiny_vae_forward_with_patches_trains(tiny):
    batch = _batch(render=32)
    layout = PatchLayout(torch.tensor([[0, 8, 16]]), torch.tensor([[16, 0, 4]]), 12)
    model = TriplaneVAE(vae_config("tiny"))
    model.load_state_dict(tiny.state_dict())
    out = model(batch, patch=layout, generator=torch.Generator().manual_seed(0))
    assert out["rgb"].shape == (1, 3, 3, 12, 12) and out["latent"].shape == (1, 12, 16, 16)
    loss = (out["rgb"] - layout.crop(batch["target_rgb"])).abs().mean() + 1e-6 * out["posterior"].kl().mean()
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("encoder.conv_in.weight", "decoder.latent_embed.proj.weight", "decoder.upsampler.conv_out.weight",
                 "renderer.field.fc2.weight", "posterior_head.conv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_tiny_vae_under_bf16_autocast(tiny):
    batch = _batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tri = tiny.decode(tiny.encode(batch["enc_input"]).mode())
        out = tiny.render(tri, batch["target_cameras"], 8, deterministic=True)
    assert out["rgb"].dtype == torch.float32 and torch.isfinite(out["rgb"]).all()


def test_vit_vae_architecture_runs_at_small_width():
    """The ShapeNet classes (ViT encoder, 3D-aware ViT decoder, roll-out upsampler) at toy widths."""
    torch.manual_seed(0)
    cfg = vae_config("shapenet", {
        "latent_size": 8,
        "encoder": {"image_size": 56, "width": 32, "depth": 4, "num_heads": 2, "pos_grid": 6},
        "decoder": {"width": 32, "depth": 4, "num_heads": 2, "unpatchify_channels": 8, "triplane_resolution": 32},
        "renderer": {"depth_samples": 8, "importance_samples": 8}})
    model = TriplaneVAE(cfg).eval()
    _randomise_zero_inits(model)
    with torch.no_grad():
        post = model.encode(torch.randn(2, 1, 3, 56, 56))
        assert post.mean.shape == (2, 4, 3, 64)
        tri = model.decode(post.mode())
        assert tri.shape == (2, 96, 32, 32)
        out = model.render(tri, orbit_cameras([0.0, 90.0], [20.0, 20.0], 1.2, 1.0254).reshape(2, 1, 25), 8)
    assert out["features"].shape == (2, 1, 32, 8, 8) and out["rgb"].shape == (2, 1, 3, 8, 8)
    ffhq = vae_config("ffhq", {"latent_size": 4, "encoder": cfg.encoder.__dict__, "decoder": {
        "width": 32, "depth": 4, "num_heads": 2, "unpatchify_channels": 8, "triplane_resolution": 32}})
    model = TriplaneVAE(ffhq).eval()
    with torch.no_grad():
        assert model.decode(torch.randn(1, 12, 4, 4)).shape == (1, 96, 32, 32)
