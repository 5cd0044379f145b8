"""Generative models that are not diffusion models: likelihood fits of singular
distributions, conditional VAEs."""

__all__: list[str] = []  # submodules, one per paper or shared piece
