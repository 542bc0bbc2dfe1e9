"""guided_diffusion"""
