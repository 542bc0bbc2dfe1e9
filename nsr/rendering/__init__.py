"""Pieces of the EG3D-style triplane renderer (spec §2.6), each small enough to test on its own.

`ray_box` (near/far), `sampling` (stratified and importance depths), `planes` (triplane feature lookup),
`field_mlp` (features → density and colour), `ray_marcher` (compositing), `patches` (patch layouts for training).
`nsr.renderer.TriplaneRenderer` puts them together.
"""
