"""Compression as representation learning: white-box coding-rate networks and quantization."""

__all__: list[str] = []  # submodules, one per paper or shared piece
