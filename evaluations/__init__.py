"""Evaluation library: image metrics, 3D generation metrics, FID/KID, the prompt-accuracy judge, result reports."""
