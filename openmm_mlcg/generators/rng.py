"""Random numbers of a batched state: one stream per replica.

A batch of R replicas stepped as one disjoint-union graph (:mod:`openmm_mlcg.model.replicas`) stacks their beads
row-wise, replica ``r`` owning rows ``[o_r, o_r + n_r)``. :class:`ReplicaStreams` draws each replica's block from
that replica's own ``torch.Generator``, with the shape ``(n_r, ...)`` a single-replica run draws, so replica ``r``
gets the numbers it would get alone with the same generator, bit for bit, whatever the other replicas do.
:func:`normal` is the one draw the ``cg_langevin`` sampler makes (a ``torch.Generator``, None or a
:class:`ReplicaStreams`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

__all__ = ["ReplicaStreams", "normal"]


class ReplicaStreams:
    """Per-replica generators of a batched state.

    Args:
        generators: R ``torch.Generator`` (on the state's device) or None (the global RNG), one per replica.
        sizes: R row counts n_r (beads per replica), in the batch's row order.

    Raises:
        ValueError: ``generators`` and ``sizes`` differ in length, or a size is < 0.
    """

    def __init__(self, generators: Sequence[Optional[torch.Generator]], sizes: Sequence[int]):
        self.generators, self.sizes = list(generators), [int(n) for n in sizes]
        if len(self.generators) != len(self.sizes):
            raise ValueError(f"generators: expected one per replica ({len(self.sizes)}), got {len(self.generators)}")
        if any(n < 0 for n in self.sizes):
            raise ValueError(f"sizes: expected row counts >= 0, got {self.sizes}")

    def randn(self, shape, device, dtype) -> torch.Tensor:
        """Standard normal ``shape`` = (sum n_r, ...): each replica's rows from its own generator.

        Raises:
            ValueError: ``shape[0]`` is not the sum of the sizes.
        """
        shape = tuple(shape)
        if not shape or shape[0] != sum(self.sizes):
            raise ValueError(f"shape: expected ({sum(self.sizes)}, ...) rows of {len(self.sizes)} replicas, "
                             f"got {shape}")
        return torch.cat([torch.randn((n,) + shape[1:], generator=g, device=device, dtype=dtype)
                          for g, n in zip(self.generators, self.sizes)])


def normal(shape, generator: Union[None, torch.Generator, ReplicaStreams], device, dtype) -> torch.Tensor:
    """Standard normal draw of ``shape`` from ``generator`` (a ``torch.Generator``, None: the global RNG, or a
    :class:`ReplicaStreams`: one stream per replica)."""
    if isinstance(generator, ReplicaStreams):
        return generator.randn(shape, device, dtype)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)
