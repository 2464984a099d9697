"""Data-parallel training with ``torch.distributed`` and ``DistributedDataParallel`` (DDP).

A run launched by ``torchrun`` (the environment holds ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK`` and the
rendezvous variables) trains with one process per rank: backend ``gloo`` on CPU, ``nccl`` on CUDA (``LOCAL_RANK``
picks the GPU; ``training.device: cuda`` means "this rank's GPU"). Every rank builds the same model, takes a
disjoint contiguous share of the same global window list of each step (``optim.batch_size`` windows in all,
``batch_size / world_size`` per rank) and DDP averages the gradients. Each rank's loss is weighted by its share
of the step's beads, so the averaged gradient is the gradient of the per-bead mean over the whole global batch,
as in one process; the logged loss is the all-reduced per-bead mean. Rank 0 alone holds the output directory's
lock and writes the log, the checkpoints, the bundle and the post-training fits; the other ranks wait for it.

Randomness: rank 0 draws the noise of step s from the generator a single process uses (seed, s); rank r > 0 from
one keyed by (seed, s, r). A run is therefore reproducible (and resumable after a kill) at a fixed world size;
with input noise or score matching on, runs at different world sizes draw different (equally distributed) noise.

Source: PyTorch ``torch.distributed`` / ``torch.nn.parallel.DistributedDataParallel`` documentation.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

__all__ = ["SINGLE", "LossModule", "Ranks", "launched", "session", "step_generator", "wrap"]

#: how long the other ranks wait for rank 0's work outside the training steps (data cache, fits, bundle)
MAIN_WAIT = timedelta(days=2)


def launched() -> bool:
    """True when this process is one of several launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment).

    Raises:
        ValueError: ``WORLD_SIZE`` is set but not a positive integer.
    """
    raw = os.environ.get("WORLD_SIZE")
    if raw is None:
        return False
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"WORLD_SIZE: expected a positive integer (set by torchrun), got {raw!r}")
    return n > 1


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world_size`` (0 of 1 for a single process), its
    ``local_rank`` on the node and the gloo group ``control`` (long timeout) of the waits for rank 0."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: Any = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one writer of the output directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA ``device`` in a distributed run, else ``device``."""
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, indices: Sequence[int]) -> list:
        """This rank's contiguous share of the step's global window list (``len(indices) / world_size`` windows).

        Raises:
            ValueError: ``len(indices)`` (``optim.batch_size``) is not a multiple of the world size.
        """
        n = len(indices)
        if n % self.world_size:
            raise ValueError(f"optim.batch_size: expected a multiple of the world size {self.world_size} (each rank "
                             f"takes an equal share of the global batch), got {n}")
        k = n // self.world_size
        return list(indices[self.rank * k:(self.rank + 1) * k])

    def sum(self, values: Sequence[float]) -> list:
        """Element-wise sum of ``values`` over the ranks (float64; the values themselves in one process)."""
        if not self.distributed:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return t.tolist()

    def main_first(self, fn: Callable[[], Any], others: Optional[Callable[[], Any]] = None):
        """Run ``fn`` on rank 0, then (once it succeeded) ``others`` (default ``fn``) on the other ranks: rank 0
        fills a cache the others then read, or takes the output lock first.

        Raises:
            whatever ``fn`` raises on rank 0; RuntimeError on the other ranks when ``fn`` failed on rank 0.
        """
        if not self.distributed:
            return fn()
        result = self._on_main(fn)
        return result if self.is_main else (fn if others is None else others)()

    def on_main(self, fn: Callable[[], Any]):
        """Run ``fn`` on rank 0 only while the others wait; returns its result on rank 0, None elsewhere.

        Raises:
            whatever ``fn`` raises on rank 0; RuntimeError on the other ranks when ``fn`` failed on rank 0.
        """
        if not self.distributed:
            return fn()
        return self._on_main(fn)

    def _on_main(self, fn):
        """Rank 0 runs ``fn`` and sends the others None or the text of its exception (gloo, ``MAIN_WAIT``)."""
        import torch.distributed as dist

        if self.is_main:
            status, result = [None], None
            try:
                result = fn()
            except BaseException as exc:
                status = [f"{type(exc).__name__}: {exc}"]
                dist.broadcast_object_list(status, src=0, group=self.control)
                raise
            dist.broadcast_object_list(status, src=0, group=self.control)
            return result
        status = [None]
        dist.broadcast_object_list(status, src=0, group=self.control)
        if status[0] is not None:
            raise RuntimeError(f"training: rank 0 failed ({status[0]}); rank {self.rank} stops")
        return None


#: the ranks of a single-process run
SINGLE = Ranks()


@contextlib.contextmanager
def session(device: str, name: str = "training.device"):
    """The :class:`Ranks` of this process for the block: one process unless launched by ``torchrun``, then the
    default process group (``gloo`` for a CPU ``device``, ``nccl`` for CUDA) is initialised from the environment
    (``env://``) and destroyed at the end. An already initialised default group is used as it is.

    Args:
        device: ``training.device`` ("cpu", "cuda", "cuda:N"); name: how messages name it.

    Raises:
        RuntimeError: a torchrun launch but ``torch.distributed`` (or the backend) is not available.
        ValueError: a bad ``WORLD_SIZE``; a CUDA ``device`` in a distributed run without CUDA.
    """
    import torch.distributed as dist

    if not (launched() or (dist.is_available() and dist.is_initialized())):
        yield SINGLE
        return
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')}: a torchrun launch, but this torch "
                           f"({torch.__version__}) has no torch.distributed")
    cuda = str(device).startswith("cuda")
    owned = not dist.is_initialized()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if owned:
        if cuda:
            if not torch.cuda.is_available():
                raise ValueError(f"{name}: {device!r} requested but CUDA is not available on rank "
                                 f"{os.environ.get('RANK')}; use device 'cpu' (gloo)")
            torch.cuda.set_device(local_rank)
        backend = "nccl" if cuda else "gloo"
        if not (dist.is_nccl_available() if cuda else dist.is_gloo_available()):
            raise RuntimeError(f"{name}: {device!r} needs the torch.distributed backend {backend!r}, which this "
                               f"torch ({torch.__version__}) lacks")
        dist.init_process_group(backend=backend)
    try:
        control = dist.new_group(backend="gloo", timeout=MAIN_WAIT)
        yield Ranks(dist.get_rank(), dist.get_world_size(), local_rank, control)
    finally:
        if owned:
            dist.destroy_process_group()


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of every random draw of optimisation step ``step`` on ``rank`` (rank 0: the one of a
    single-process run)."""
    key = [int(seed), int(step), 7] + ([int(rank)] if rank else [])
    state = np.random.SeedSequence(key).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class LossModule(torch.nn.Module):
    """``model.loss`` as a module's forward (what DDP wraps: its hooks average the gradients in backward)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, graphs, generator, options):
        """The training loss dict of :meth:`openmm_mlcg.model.CGDynamicsModel.loss` (train=True)."""
        return self.model.loss(batch, graphs, generator, train=True, options=options)


def wrap(model: torch.nn.Module, ranks: Ranks) -> Callable:
    """``(batch, graphs, generator, options) -> loss dict``: through DDP in a distributed run, else direct.

    ``find_unused_parameters``: a disabled score leaves the Score GNN out of the loss. The buffers (constants,
    equal on every rank) keep DDP's default sync (``broadcast_buffers`` is deprecated in newer torch)."""
    module = LossModule(model)
    if not ranks.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=None, find_unused_parameters=True)
