"""Shared infrastructure: checkpoints, distributed set-up, training-loop pieces, media writing."""
from utils.torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()
