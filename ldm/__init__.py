"""Conditioners: turn prompts or images into the `dict(crossattn, vector)` context the stage-2 denoisers read.

`utils` is imported first: timm, open_clip and transformers import torchvision, which only imports next to a
CPU-only torch after `utils.torchvision_compat` has declared its missing operators.
"""
import utils  # noqa: F401  (must precede any torchvision import)
from ldm.base import Conditioner
from ldm.prompts import validate_prompts
from ldm.registry import build_conditioner, conditioner_names
from ldm.weights import MissingWeightsError

__all__ = ["Conditioner", "MissingWeightsError", "build_conditioner", "conditioner_names", "validate_prompts"]
