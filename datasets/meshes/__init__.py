"""Your own meshes as stage-1 data: loading (trimesh), normalisation into the object box, and a plain-torch
z-buffer rasteriser rendering the G-Objaverse rig on CPU or CUDA (scripts/render_meshes.py, docs/DATA.md)."""
