"""`ObjectRecord`: the multi-view renders of one object, the common currency of every store reader and writer."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ObjectRecord:
    """Views of one object as float arrays (what writers quantise and readers restore).

    color `(V, H, W, 3)` straight (un-premultiplied) colour in [0, 1], 1 where alpha is 0; alpha `(V, H, W)`;
    depth `(V, H, W)` camera-space z, 0 for background; normal `(V, H, W, 3)` world normals or None;
    cameras `(V, 25)`; view_ids `(V,)` G-Objaverse rig indices of the views; labels: category, main_color,
    part_colors, captions (and, for procedural objects, the JSON spec under "spec").
    """

    object_id: str
    view_ids: np.ndarray
    cameras: np.ndarray
    color: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    normal: np.ndarray | None = None
    caption: str = ""
    labels: dict = field(default_factory=dict)

    @property
    def category(self) -> str:
        return self.labels.get("category", self.object_id.split("/")[0])

    @property
    def num_views(self) -> int:
        return len(self.view_ids)

    @property
    def resolution(self) -> int:
        return self.color.shape[1]

    def rgb_on_white(self) -> np.ndarray:
        """Colour composited on white, `(V, H, W, 3)` in [0, 1]."""
        a = self.alpha[..., None]
        return self.color * a + (1.0 - a)

    def select(self, view_ids) -> ObjectRecord:
        """The record restricted to the given rig view ids, in that order (KeyError naming a missing view)."""
        position = {int(v): k for k, v in enumerate(self.view_ids)}
        missing = [int(v) for v in view_ids if int(v) not in position]
        if missing:
            raise KeyError(f"object {self.object_id} has no view {missing[0]} (it has {sorted(position)})")
        idx = np.array([position[int(v)] for v in view_ids], dtype=np.int64)
        return ObjectRecord(self.object_id, self.view_ids[idx], self.cameras[idx], self.color[idx], self.alpha[idx],
                            self.depth[idx], None if self.normal is None else self.normal[idx], self.caption,
                            self.labels)


def foreground_boxes(alpha: torch.Tensor) -> torch.Tensor:
    """Inclusive foreground boxes [top, left, bottom, right] of alpha `(V, H, W)` (alpha > 0), `(V, 4)` int64 on
    alpha's device. A view without foreground gets the whole image."""
    views, height, width = alpha.shape
    fg = alpha > 0
    rows, cols = fg.any(2), fg.any(1)
    ar_h = torch.arange(height, device=alpha.device)
    ar_w = torch.arange(width, device=alpha.device)
    boxes = torch.stack([torch.where(rows, ar_h, height).amin(1), torch.where(cols, ar_w, width).amin(1),
                         torch.where(rows, ar_h, -1).amax(1), torch.where(cols, ar_w, -1).amax(1)], 1)
    whole = torch.tensor([0, 0, height - 1, width - 1], device=alpha.device)
    return torch.where(rows.any(1)[:, None], boxes, whole)


def foreground_bbox(alpha: np.ndarray) -> np.ndarray:
    """`foreground_boxes` of a NumPy alpha `(V, H, W)`, as a NumPy `(V, 4)` int64 array (what the stores write)."""
    return foreground_boxes(torch.from_numpy(np.ascontiguousarray(alpha))).numpy()
