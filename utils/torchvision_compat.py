"""Make torchvision importable next to a CPU-only torch.

PyPI has no CPU torchvision for Linux; the CUDA build installs beside the CPU torch, but its `_C.so` cannot load and
its meta registrations then fail with "operator torchvision::nms does not exist". Declaring the two op schemas before
torchvision is imported lets the pure-Python parts (models, transforms, utils) work, which is all timm, open_clip,
lpips and torchmetrics need. Where torchvision's own extension loads (any GPU install), nothing is changed.
"""
from __future__ import annotations

import importlib.util
import os
import sys

_done = False


def ensure_torchvision_importable() -> None:
    global _done
    if _done or "torchvision" in sys.modules:
        return
    _done = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    package_dir = list(spec.submodule_search_locations)[0]
    ext = [f for f in os.listdir(package_dir) if f.startswith("_C") and f.endswith((".so", ".pyd"))]
    try:
        if ext:
            torch.ops.load_library(os.path.join(package_dir, ext[0]))
            return
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841  kept alive through the registry
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_lib"] = lib
