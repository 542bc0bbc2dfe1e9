"""CFG training dropout: captions for T23D, independent streams for I23D."""
import pytest
import torch

from guided_diffusion.guidance import I23D_STREAM_DROP, T23D_CAPTION_DROP, drop_captions, drop_streams


def test_released_rates():
    assert T23D_CAPTION_DROP == 0.1 and I23D_STREAM_DROP == pytest.approx(0.19)


def test_drop_captions_replaces_with_the_empty_string_at_the_rate():
    g = torch.Generator().manual_seed(0)
    captions = [f"object {i}" for i in range(20_000)]
    dropped = drop_captions(captions, 0.1, generator=g)
    assert all(d in ("", c) for c, d in zip(captions, dropped))
    assert abs(sum(d == "" for d in dropped) / len(captions) - 0.1) < 0.01
    assert drop_captions(["a", "b"], 0.0) == ["a", "b"] and drop_captions(["a", "b"], 1.0) == ["", ""]


def test_drop_streams_zeroes_each_stream_independently_at_the_rate():
    n, split = 20_000, 3
    context = {"vector": torch.ones(n, 2), "crossattn": torch.ones(n, 4, split + 5)}
    out = drop_streams(context, I23D_STREAM_DROP, crossattn_split=split, generator=torch.Generator().manual_seed(0))
    kept = torch.stack([out["vector"][:, 0], out["crossattn"][:, 0, 0], out["crossattn"][:, 0, split]], 1)
    # within a stream a sample is dropped entirely
    assert torch.equal(out["vector"].amin(1), out["vector"].amax(1))
    assert torch.equal(out["crossattn"][..., :split].amin((1, 2)), out["crossattn"][..., :split].amax((1, 2)))
    assert torch.equal(out["crossattn"][..., split:].amin((1, 2)), out["crossattn"][..., split:].amax((1, 2)))
    rates = 1 - kept.mean(0)
    torch.testing.assert_close(rates, torch.full((3,), 0.19), atol=0.01, rtol=0)
    # independence: both-dropped frequency ≈ product of the rates
    both = ((kept[:, 1] == 0) & (kept[:, 2] == 0)).float().mean()
    assert abs(both.item() - 0.19**2) < 0.006
    assert torch.equal(context["vector"], torch.ones(n, 2))  # input untouched
