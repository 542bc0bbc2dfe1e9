"""The up-front mesh time estimate: it tracks the real extraction, and the CLIs announce a slow one before sampling."""
import dataclasses
import time

import torch

from guided_diffusion import cli
from guided_diffusion.pipeline import GenerationSettings, Pipeline


def test_estimate_tracks_the_real_extraction_and_is_announced(tiny_pipeline_dir, tiny_mesh_level, capsys,
                                                               monkeypatch):
    pipeline = Pipeline.from_checkpoint(tiny_pipeline_dir, "t23d", torch.device("cpu"))
    settings = pipeline.resolve(dataclasses.replace(GenerationSettings(), mesh_resolution=48,
                                                    mesh_level=tiny_mesh_level))
    estimate = pipeline.mesh_seconds(settings)
    triplane = pipeline.models.vae.decode(torch.randn(1, *pipeline.models.vae.config.latent_shape))
    t0 = time.perf_counter()
    pipeline.mesh(triplane, settings)
    actual = time.perf_counter() - t0
    # the field queries are a large part of the work but not all (marching cubes, colours, decimation)
    assert actual / 10 < estimate < actual * 1.5, (estimate, actual)

    assert cli.warn_slow_mesh(pipeline, settings, "t23d") is None  # 48³: not worth measuring on every run
    monkeypatch.setattr(cli, "MEASURE_MESH_FROM", 0)
    monkeypatch.setattr(cli, "SLOW_MESH_S", 0.0)
    assert cli.warn_slow_mesh(pipeline, settings, "t23d") > 0
    line = capsys.readouterr().err.strip()
    assert line.startswith("t23d: the --mesh-resolution 48 mesh's field queries alone will take about ")
    assert "--mesh-resolution 24 takes about" in line
    monkeypatch.setattr(cli, "SLOW_MESH_S", 1e9)
    cli.warn_slow_mesh(pipeline, settings, "t23d")
    assert capsys.readouterr().err == ""
    assert cli.warn_slow_mesh(pipeline, dataclasses.replace(settings, mesh_formats=()), "t23d") is None
