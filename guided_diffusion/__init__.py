"""Stage-2 latent diffusion: denoisers on the tri-plane latent, DDPM and flow-matching processes, samplers, CFG.

- denoisers: `dit_t23d.T23DDiT`, `dit_i23d.I23DDiT`, `unet.UNet` (built from `config` presets);
- processes: `ddpm.DDPM`, `flow_matching.FlowMatching`; guidance and CFG dropout: `guidance`;
- sampling: `samplers.sample(model, process, noise, context, sampler=...)`;
- parity with the released networks: `golden.check_dit`.
"""
