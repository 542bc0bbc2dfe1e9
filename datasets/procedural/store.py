"""A store whose objects are rendered when read: zero-setup data for smoke tests and tiny CPU experiments."""
from __future__ import annotations

import dataclasses

import numpy as np

from datasets.procedural.grammar import generate_object
from datasets.procedural.pipeline import GenerationConfig, procedural_object_id, render_records
from datasets.record import ObjectRecord
from datasets.stores.base import ObjectStore, ViewSelector


class ProceduralStore(ObjectStore):
    """Objects `start_index … start_index + num_objects − 1` of dataset `config.seed`, rendered on `read`.

    Only the views the selector asks for are rendered, so a Dataset over it pays for encoder + target views only.
    """

    def __init__(self, num_objects: int, config: GenerationConfig | None = None, start_index: int = 0):
        self.config = config or GenerationConfig()
        self.num_objects = int(num_objects)
        self.start_index = int(start_index)
        self.location = f"<procedural seed={self.config.seed}>"

    def __len__(self) -> int:
        return self.num_objects

    def object_id(self, index: int) -> str:
        return procedural_object_id(generate_object(self.config.seed, self.start_index + self._check_index(index)))

    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        index = self._check_index(index)
        wanted = self._check_views(f"{self.location}[{index}]", np.array(self.config.view_ids), select_views)
        config = dataclasses.replace(self.config, view_ids=tuple(wanted))
        return render_records([self.start_index + index], config)[0]
