"""The renderer: DiT (velocity only), Euler flow sampler, batched/long-event rendering, Oobleck VAE, T5 "" tokens.

Modules: ``dit`` (AudioDiT), ``sampler`` (euler_sample), ``render`` (render_latents), ``vae`` (decode/encode),
``text_encoder`` (unconditional CFG tokens), ``geometry`` (seconds/samples/frames, torch-free).
Nothing is imported here so that ``generator.geometry`` stays light.
"""
