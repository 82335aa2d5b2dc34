"""Denormal flushing speeds up ES2's CPU work but must not leak into the host program."""

import torch

from es2_plugin.cpu import flushed_denormals, with_flushed_denormals

DENORMAL = 1e-40  # below float32's smallest normal number (~1.18e-38)


def test_denormals_flush_inside_the_block_only():
    with flushed_denormals():
        assert torch.tensor([DENORMAL], dtype=torch.float32).item() == 0.0
    assert torch.tensor([DENORMAL], dtype=torch.float32).item() > 0.0


def test_decorator_restores_even_when_the_function_raises():
    @with_flushed_denormals
    def boom():
        raise RuntimeError("x")

    try:
        boom()
    except RuntimeError:
        pass
    assert torch.tensor([DENORMAL], dtype=torch.float32).item() > 0.0
