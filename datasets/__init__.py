"""Data: the procedural 3D dataset, the on-disk stores and the stage-1/stage-2 torch Datasets (docs/DATA.md).

Kept import-free on purpose: this package shadows HuggingFace `datasets`, which transformers probes on import.
"""
