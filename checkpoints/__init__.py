"""Weights: the embedded default model (`procedural/`) and the one converter for the released checkpoints."""
