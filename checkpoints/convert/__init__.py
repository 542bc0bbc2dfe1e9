"""The one converter between the released LN3Diff checkpoints and our modules.

Key mapping rules live here and nowhere else: `vae.py` for the stage-1 VAE (`rec_model.` in joint files),
`dit.py` for the stage-2 denoisers (`ddpm_model.`). Each provides `to_ours(name) -> name | None` and
`to_released(name) -> name` over standalone (un-prefixed) key names.
"""
