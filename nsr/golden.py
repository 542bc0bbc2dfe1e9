"""Golden-fixture parity for the stage-1 VAE: rebuild the released Objaverse VAE with the fixture's deterministic
weights and compare every stored tensor.

A fixture folder holds `manifest_vae_objaverse.json`, `golden_vae_objaverse.npz`, and its own `fill_weights.py`
and `make_inputs.py` (imported from that folder). `check_vae` feeds each stage the stored output of the previous
stage where the fixture keeps it in full (posterior ← encoder_out, latent embedding ← latent_2d, field queries and
renders ← triplane) so a failure points at one stage; the DiT and upsampler run on our own upstream outputs because
the fixture keeps only subsets of the tokens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from checkpoints.convert.vae import to_ours
from nsr.cameras import camera_rays
from nsr.config import vae_config
from nsr.vae import TriplaneVAE
from utils.golden import Check, compare, load_fixture_module

RENDER_TOL = 1e-4  # absolute, for renders and per-sample rendering data


def build_filled_vae(fixture_dir: Path) -> tuple[TriplaneVAE, list]:
    """The `objaverse` VAE with every parameter set from the fixture's fill recipe, and fill_weights.verify's
    mismatch list. Built on the meta device first so no time goes into a random init that is overwritten."""
    fw = load_fixture_module(fixture_dir, "fill_weights")
    manifest = fw.load_manifest(Path(fixture_dir) / "manifest_vae_objaverse.json")
    with torch.device("meta"):
        model = TriplaneVAE(vae_config("objaverse"))
    model = model.to_empty(device="cpu")
    state = model.state_dict()
    filled = set()
    with torch.no_grad():
        for entry in manifest["entries"]:
            ours = to_ours(entry["name"])
            if ours is None:
                continue
            value = fw.entry_value(entry)
            if value is not None:
                state[ours].copy_(value)
                filled.add(ours)
    missing = sorted(set(state) - filled)
    if missing:
        raise RuntimeError(f"{len(missing)} parameters not covered by the manifest, e.g. {missing[:3]}")
    kept = {"entries": [e for e in manifest["entries"] if to_ours(e["name"]) is not None]}
    return model.eval(), fw.verify(state, kept, rename=to_ours)


class _Report:
    def __init__(self):
        self.rows: list[Check] = []

    def add(self, name: str, ours, ref, tol: float | None = None):
        """One row; tol None: relative to the reference's abs-max (`utils.golden.compare`)."""
        self.rows.append(compare(name, ours, ref, tol))

    def add_tokens(self, name: str, tokens: torch.Tensor, golden):
        """Subset values and per-channel statistics (over batch and tokens) of a `(B, L, C)` tensor."""
        flat = tokens.reshape(-1)
        self.add(f"{name}[subset]", flat[torch.as_tensor(golden[f"{name}__idx"])], golden[f"{name}__val"])
        x = tokens.double().reshape(-1, tokens.shape[-1])
        self.add(f"{name}.ch_mean", x.mean(0), golden[f"{name}__ch_mean"])
        self.add(f"{name}.ch_std", x.std(0, unbiased=False), golden[f"{name}__ch_std"])
        self.add(f"{name}.ch_absmax", x.abs().amax(0), golden[f"{name}__ch_absmax"])


@torch.no_grad()
def check_vae(fixture_dir) -> list[Check]:
    """Compare our `objaverse` VAE against `golden_vae_objaverse.npz`; rows of (tensor, max abs error, tol, ok)."""
    fixture_dir = Path(fixture_dir)
    golden = np.load(fixture_dir / "golden_vae_objaverse.npz")
    g = {k: golden[k] for k in golden.files}
    report = _Report()

    model, mismatches = build_filled_vae(fixture_dir)
    report.rows.append(("weights (fill_weights.verify mismatches)", float(len(mismatches)), 0.0, not mismatches))

    make_inputs = load_fixture_module(fixture_dir, "make_inputs")
    x, cameras = (torch.from_numpy(a) for a in make_inputs.encoder_input())
    report.add("input_x[subset]", x.reshape(-1)[torch.as_tensor(g["input_x__idx"])], g["input_x__val"], tol=0.0)
    report.add("input_cameras", cameras, g["input_cameras"], tol=0.0)

    encoder_out = model.encoder(x[None])
    report.add("encoder_out", encoder_out, g["encoder_out"])
    posterior = model.posterior_head(torch.from_numpy(g["encoder_out"]))
    report.add("posterior_mean", posterior.mean, g["posterior_mean"])
    report.add("posterior_logvar", posterior.logvar, g["posterior_logvar"])
    report.add("latent_2d", model.posterior_head(encoder_out).mode(), g["latent_2d"])

    decoder = model.decoder
    tokens = decoder.latent_embed(torch.from_numpy(g["latent_2d"]))
    report.add_tokens("ldm_upsample_tokens", tokens, g)
    hidden = decoder.transformer(tokens)
    report.add_tokens("vit_decoder_out", hidden, g)
    report.add("triplane", decoder.tokens_to_triplane(hidden), g["triplane"])

    triplane = torch.from_numpy(g["triplane"])
    field = model.query(triplane, torch.from_numpy(g["query_points"]))
    report.add("query_sigma", field["sigma"], g["query_sigma"])
    report.add("query_rgb", field["rgb"], g["query_rgb"])

    views = torch.as_tensor(g["render_views"]).long()
    resolution = g["render_image_raw"].shape[-1]
    render_cams = cameras[views]
    origins, directions = camera_rays(render_cams, resolution)
    # bit-exact: the rounding of the rays decides which samples on the box faces pass the box filter
    report.add("render_ray_origins", origins, g["render_ray_origins"], tol=0.0)
    report.add("render_ray_directions", directions, g["render_ray_directions"], tol=0.0)
    images = model.render(triplane, render_cams[None], resolution, deterministic=True)
    report.add("render_image_raw", images["rgb"][0], g["render_image_raw"], tol=RENDER_TOL)
    report.add("render_image_depth", images["depth"][0], g["render_image_depth"], tol=RENDER_TOL)
    report.add("render_image_mask", images["alpha"][0], g["render_image_mask"], tol=RENDER_TOL)
    report.add("render_weights_samples", images["weights"][0], g["render_weights_samples"], tol=RENDER_TOL)

    n = len(views)
    rays = model.renderer.render_rays(triplane, origins.reshape(1, -1, 3), directions.reshape(1, -1, 3),
                                      deterministic=True, return_samples=True)
    subset = torch.as_tensor(g["render_rays_subset_index"]).long()
    points = rays["points"].reshape(n, -1, *rays["points"].shape[2:])[:, subset]
    weights = rays["weights"].reshape(n, -1, *rays["weights"].shape[2:])[:, subset]
    report.add("render_all_coords_subset", points, g["render_all_coords_subset"], tol=RENDER_TOL)
    report.add("render_weights_per_sample_subset", weights, g["render_weights_per_sample_subset"], tol=RENDER_TOL)
    return report.rows


def format_rows(rows) -> str:
    lines = [f"{'tensor':44s} {'max err':>11s} {'tol':>11s}  ok"]
    lines += [f"{name:44s} {err:11.3e} {tol:11.3e}  {'yes' if ok else 'NO'}" for name, err, tol, ok in rows]
    return "\n".join(lines)

