"""Procedural objects → rendered `ObjectRecord`s, batched so a GPU renders many objects × views per call."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from datasets.procedural.grammar import generate_object
from datasets.procedural.spec import ObjectSpec
from datasets.procedural.tracer import RenderOutput, TracerConfig, render_objects
from datasets.record import ObjectRecord
from datasets.rig import default_view_ids, object_rig


@dataclass
class GenerationConfig:
    seed: int = 0
    resolution: int = 128
    view_ids: tuple[int, ...] = field(default_factory=lambda: default_view_ids(40))
    device: str = "cpu"
    batch_objects: int = 4          # objects rendered together (all views of each)
    tracer: TracerConfig = field(default_factory=TracerConfig)


def parse_procedural_source(data: str) -> tuple[int, int] | None:
    """`procedural:N` or `procedural:N:SEED` (objects 0 … N − 1 of dataset SEED, default 0) → (N, SEED); any other
    string (a store path) → None."""
    if not data.startswith("procedural:"):
        return None
    parts = data.split(":")[1:]
    try:
        num, seed = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        if len(parts) > 2 or num < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"--data {data!r}: write procedural:N or procedural:N:SEED with N ≥ 1 objects") from None
    return num, seed


def procedural_object_id(spec: ObjectSpec) -> str:
    """G-Objaverse-style id `<category>/<dict_id>/<ins_id>` with dict_id = index // 1000 and ins_id = index."""
    return f"{spec.category}/{spec.index // 1000}/{spec.index}"


def object_labels(spec: ObjectSpec) -> dict:
    """The spec's labels plus the spec itself (without labels) under "spec", so a record can rebuild its SDF."""
    spec_dict = spec.to_dict()
    spec_dict.pop("labels")
    return dict(spec.labels, spec=spec_dict)


def render_outputs(indices: Sequence[int], config: GenerationConfig
                   ) -> Iterator[tuple[list[ObjectSpec], torch.Tensor, RenderOutput]]:
    """Generate and render the objects `indices` of dataset `config.seed`: per rendered batch its specs, cameras
    `(b, V, 25)` (CPU) and the render (`(b, V, C, R, R)` tensors on `config.device`).

    Objects are batched by category (a batch of one category pads every primitive table far less than a mixed one),
    so objects come out grouped by category, in index order within a category.
    """
    specs = [generate_object(config.seed, int(i)) for i in indices]
    order = sorted(range(len(specs)), key=lambda k: (specs[k].category, k))
    view_ids = torch.tensor(config.view_ids, dtype=torch.long)
    start = 0
    while start < len(order):
        stop = start + 1
        while (stop < len(order) and stop - start < config.batch_objects
               and specs[order[stop]].category == specs[order[start]].category):
            stop += 1
        batch = [specs[k] for k in order[start:stop]]
        cameras = torch.stack([object_rig(config.seed, s.index)[view_ids] for s in batch])
        yield batch, cameras, render_objects(batch, cameras.to(config.device), config.resolution, config.tracer,
                                             device=config.device)
        start = stop


def render_batches(indices: Sequence[int], config: GenerationConfig) -> Iterator[list[ObjectRecord]]:
    """`render_outputs` as `ObjectRecord`s (NumPy, on the CPU), one rendered batch at a time."""
    view_ids = np.array(config.view_ids, dtype=np.int64)
    for batch, cameras, out in render_outputs(indices, config):
        color = out.color.permute(0, 1, 3, 4, 2).float().cpu().numpy()
        normal = out.normal.permute(0, 1, 3, 4, 2).float().cpu().numpy()
        alpha = out.alpha[:, :, 0].float().cpu().numpy()
        depth = out.depth[:, :, 0].float().cpu().numpy()
        yield [ObjectRecord(object_id=procedural_object_id(spec), view_ids=view_ids.copy(),
                            cameras=cameras[j].numpy(), color=color[j], alpha=alpha[j], depth=depth[j],
                            normal=normal[j], caption=spec.labels["captions"][0], labels=object_labels(spec))
               for j, spec in enumerate(batch)]


def render_records(indices: Sequence[int], config: GenerationConfig) -> list[ObjectRecord]:
    """Rendered records of the objects `indices`, in the order given."""
    position = {int(i): k for k, i in enumerate(indices)}
    records: list[ObjectRecord | None] = [None] * len(position)
    for batch in render_batches(indices, config):
        for record in batch:
            records[position[record.labels["spec"]["index"]]] = record
    return records
