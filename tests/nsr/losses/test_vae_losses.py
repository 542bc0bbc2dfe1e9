"""Stage-1 losses against hand-computed values."""
import warnings

import pytest
import torch

from nsr.losses import (
    KLSchedule,
    LPIPSLoss,
    NLayerDiscriminator,
    VAELoss,
    VAELossConfig,
    build_lpips,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    hinged_depth_loss,
    l1,
    masked_mse,
    mse,
    perceptual,
    scale_shift_invariant_depth_loss,
)


def test_masked_mse_normalises_each_region_by_its_own_size():
    target = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :1, :2] = 1.0  # 2 foreground pixels, 14 background
    pred = torch.where(mask.bool().expand(1, 3, 4, 4), 1.0, 2.0)  # fg error 1, bg error 2
    assert masked_mse(pred, target, mask, bg_weight=1.0).item() == pytest.approx(1.0 + 4.0)
    assert masked_mse(pred, target, mask, bg_weight=0.25).item() == pytest.approx(1.0 + 1.0)
    assert mse(pred, target).item() == pytest.approx((2 * 1 + 14 * 4) / 16)
    assert l1(pred, target).item() == pytest.approx((2 * 1 + 14 * 2) / 16)


def test_masked_mse_with_empty_foreground_is_background_only():
    pred, target = torch.full((2, 3, 4, 4), 0.5), torch.zeros(2, 3, 4, 4)
    assert masked_mse(pred, target, torch.zeros(2, 1, 4, 4), bg_weight=2.0).item() == pytest.approx(0.5)


def _depth_scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = 1.5 + torch.rand(3, 1, 8, 8, generator=g)
    mask = torch.zeros(3, 1, 8, 8)
    mask[:, :, 2:7, 1:6] = 1
    return target, mask, torch.rand(3, 1, 8, 8, generator=g)


def test_depth_loss_is_zero_for_any_affine_copy_of_the_target():
    target, mask, _ = _depth_scene()
    pred = -0.7 * target + 4.0
    pred = pred + (1 - mask) * 100.0  # background is ignored
    assert scale_shift_invariant_depth_loss(pred, target, mask).item() == pytest.approx(0.0, abs=1e-6)  # fp32 noise
    target, mask = target.double(), mask.double()
    exact = scale_shift_invariant_depth_loss(-0.7 * target + 4.0 + (1 - mask) * 100.0, target, mask)
    assert exact.item() == pytest.approx(0.0, abs=1e-12)


def test_depth_loss_is_invariant_to_scale_and_shift_of_the_prediction():
    target, mask, pred = _depth_scene()
    base = scale_shift_invariant_depth_loss(pred, target, mask)
    assert base.item() > 1e-3
    for scale, shift in ((2.0, 0.0), (0.1, 3.0), (-5.0, -1.0)):
        moved = scale_shift_invariant_depth_loss(scale * pred + shift, target, mask)
        assert moved.item() == pytest.approx(base.item(), rel=1e-4)


def test_depth_loss_value_mse_plus_half_gradient():
    # one image, all-foreground 1×3 row: target (0, 1, 0) is not affine in pred (0, 1, 2)
    pred = torch.tensor([[[0.0, 1.0, 2.0]]], dtype=torch.float64)
    target = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64)
    mask = torch.ones_like(pred)
    # least squares: s = 0, t = 1/3 → aligned = 1/3 everywhere; residual (1/3, -2/3, 1/3)
    mse_part = (1 / 9 + 4 / 9 + 1 / 9) / (2 * 3)
    grad_part = (1.0 + 1.0) / 3  # |Δresidual| along x: |-1|, |1|
    loss = scale_shift_invariant_depth_loss(pred, target, mask, gradient_weight=0.5)
    assert loss.item() == pytest.approx(mse_part + 0.5 * grad_part)


def test_depth_hinge_drops_large_losses_and_weights_small_ones():
    assert hinged_depth_loss(torch.tensor(0.3), weight=0.5).item() == 0.0
    assert hinged_depth_loss(torch.tensor(0.1), weight=0.5).item() == pytest.approx(0.05)
    assert hinged_depth_loss(torch.tensor(0.2), weight=0.5).item() == pytest.approx(0.1)


def test_kl_schedule_values():
    kl = KLSchedule(weight=1e-6, anneal=True, start=5000, length=25000)
    assert kl.floor == 1e-9
    assert kl(0) == 1e-9 and kl(5000) == pytest.approx(1e-9)
    assert kl(17500) == pytest.approx(1e-9 + (1e-6 - 1e-9) * 0.5)
    assert kl(30000) == pytest.approx(1e-6) and kl(10 ** 7) == 1e-6
    assert KLSchedule(weight=1e-6, anneal=False)(0) == 1e-6
    assert KLSchedule(weight=1e-2, start=0, length=10)(5) == pytest.approx(1e-6 + (1e-2 - 1e-6) * 0.5)


def test_hinge_losses():
    assert hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0
    assert hinge_discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(1.0)
    assert hinge_discriminator_loss(torch.full((4,), 0.5), torch.full((4,), 1.0)).item() == pytest.approx(1.25)
    assert generator_adversarial_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_patchgan_shape_and_init():
    d = NLayerDiscriminator(3, ndf=64, n_layers=3)
    assert d(torch.zeros(2, 3, 48, 48)).shape == (2, 1, 4, 4)
    first = d.main[0].weight
    assert abs(first.std().item() - 0.02) < 0.003 and first.mean().abs().item() < 0.002
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3


def test_lpips_missing_backbone_warns_once_and_turns_the_term_off(tmp_path, monkeypatch):
    monkeypatch.setattr(perceptual, "_warned", set())
    missing = tmp_path / "nowhere" / "alexnet.pth"
    with pytest.warns(UserWarning) as record:
        assert build_lpips("alex", missing) is None
    (message,) = [str(w.message) for w in record]
    assert message.startswith("LPIPS is OFF: the alex backbone weights are not at ")
    assert str(missing) in message and "--lpips-backbone" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_lpips("alex", missing) is None  # no second warning
        loss = VAELoss(VAELossConfig(lpips_backbone=str(missing), disc_weight=0))
    assert loss.lpips is None


def _fake_alexnet_file(tmp_path):
    """A torchvision-layout AlexNet `features.*` state dict (random weights) and its values keyed lpips-style."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation, raised inside lpips
        reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).net.state_dict()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{k.split('.', 1)[1]}": v for k, v in reference.items()}, path)
    return path, reference


def test_lpips_loads_a_local_torchvision_backbone(tmp_path):
    path, reference = _fake_alexnet_file(tmp_path)
    loss = build_lpips("alex", path)
    assert isinstance(loss, LPIPSLoss)
    for k, v in loss.model.net.state_dict().items():
        assert torch.equal(v, reference[k])
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, -x).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_lpips_corrupt_backbone_names_the_file(tmp_path):
    path = tmp_path / "alexnet.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="is not a readable torchvision alex state dict"):
        build_lpips("alex", path)


def _patches(n=4, p=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(n, 1, p, p)
    alpha[..., 8:24, 8:24] = 1.0
    depth = (1.5 + torch.rand(n, 1, p, p, generator=g)) * alpha
    rgb = torch.rand(n, 3, p, p, generator=g) * 2 - 1
    return {"rgb": rgb, "depth": depth, "alpha": alpha}


def test_vae_loss_total_is_the_weighted_sum_of_its_terms():
    cfg = VAELossConfig(l2_weight=1.0, l1_weight=0.5, lpips_weight=0.0, kl_weight=1e-3, kl_anneal=False,
                        depth_weight=0.5, depth_hinge=10.0, alpha_weight=2.0, disc_weight=0.0)
    loss = VAELoss(cfg)
    target = _patches(seed=0)
    pred = {k: v + 0.1 * torch.randn_like(v) for k, v in _patches(seed=1).items()}
    kl = torch.tensor([3.0, 5.0])
    total, terms = loss(pred, target, kl, step=0)
    expected = (masked_mse(pred["rgb"], target["rgb"], target["alpha"]) + 0.5 * l1(pred["rgb"], target["rgb"])
                + 1e-3 * 4.0 + 0.5 * terms["depth"] + 2.0 * l1(pred["alpha"], target["alpha"]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"mse", "l1", "kl", "kl_weight", "depth", "alpha", "total"}
    assert loss.discriminator is None and loss.lpips is None


def test_vae_loss_lpips_term_starts_at_its_step(tmp_path):
    path, _ = _fake_alexnet_file(tmp_path)
    cfg = VAELossConfig(l1_weight=0.0, lpips_weight=2.0, lpips_backbone=str(path), lpips_start_step=100,
                        kl_weight=0.0, depth_weight=0.0, alpha_weight=0.0, disc_weight=0.0)
    loss = VAELoss(cfg)
    pred, target = _patches(seed=1), _patches(seed=0)
    total, terms = loss(pred, target, torch.zeros(2), step=99)
    assert "lpips" not in terms and total.item() == 0.0
    total, terms = loss(pred, target, torch.zeros(2), step=100)
    assert terms["lpips"].item() > 0 and total.item() == pytest.approx(2.0 * terms["lpips"].item())


def test_vae_loss_adversarial_term_trains_the_renderer_not_the_discriminator():
    cfg = VAELossConfig(l1_weight=0.0, lpips_weight=0.0, depth_weight=0.0, alpha_weight=0.0, kl_weight=0.0,
                        disc_factor=1.0, disc_weight=0.5)
    loss = VAELoss(cfg)
    pred = {k: v.requires_grad_() for k, v in _patches().items()}
    total, terms = loss(pred, _patches(seed=1), torch.zeros(2), step=0)
    assert total.item() == pytest.approx(0.5 * terms["g_adv"].item())
    total.backward()
    assert pred["rgb"].grad is not None and pred["rgb"].grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.discriminator.parameters())
    assert all(p.requires_grad for p in loss.discriminator.parameters())

    d_loss, d_terms = loss.discriminator_loss(pred["rgb"], _patches(seed=2)["rgb"])
    d_loss.backward()
    assert all(p.grad is not None for p in loss.discriminator.parameters())
    assert set(d_terms) == {"d_loss", "d_real", "d_fake"}
