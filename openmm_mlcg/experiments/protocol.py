"""The train / judge split of one reference trajectory (paper section 4.2 protocol), shared by the
experiments and the benchmarks.

A reference run of ``n_frames`` saved frames is split in time: the model trains on frames
``0 .. n_train_frames`` (inclusive), the learned rollout starts from the last ``k+1`` model-step-spaced frames of
that training part, and it is judged only on frames after it. So the judged window never contains a training
frame (tests/test_model.py::test_judged_window_never_overlaps_training proves it for many sizes).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["TrainJudgeSplit", "train_judge_split"]


class TrainJudgeSplit(NamedTuple):
    """Frame indices of one split (all into the reference trajectory).

    Attributes:
        train: (start, stop) slice bounds of the training part, ``stop = n_train_frames + 1``.
        start_frames: (k+1,) indices of the rollout's initial history (inside the training part, one model step
            = ``stride`` frames apart, the last one is the rollout's frame 0).
        judge: (start, stop) slice bounds of the judged reference frames, all after the training part.
        n_steps: model steps of the rollout, so that its frames 1.. cover the judged window at ``stride``.
    """

    train: tuple
    start_frames: np.ndarray
    judge: tuple
    n_steps: int


def train_judge_split(n_frames: int, n_train_frames: int, history: int, stride: int) -> TrainJudgeSplit:
    """Split ``n_frames`` reference frames into a training part and a disjoint judged window.

    Args:
        n_frames: saved frames of the reference trajectory.
        n_train_frames: frame index where training ends (frames 0..n_train_frames train the model).
        history: k. stride: saved frames per model step.

    Returns:
        :class:`TrainJudgeSplit`.

    Raises:
        ValueError: naming the argument: non-positive values, a training part too short for the k+1 start frames,
            or no frame left to judge (at least one model step after training).
    """
    for name, v in (("n_frames", n_frames), ("n_train_frames", n_train_frames), ("history", history),
                    ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
    if n_train_frames < history * stride:
        raise ValueError(f"n_train_frames: expected >= history*stride = {history * stride} (the rollout's start "
                         f"history lies in the training part), got {n_train_frames}")
    n_steps = (n_frames - 1 - n_train_frames) // stride
    if n_steps < 1:
        raise ValueError(f"n_frames: expected > n_train_frames + stride = {n_train_frames + stride} (a judged "
                         f"window after the training part), got {n_frames}")
    start = np.arange(n_train_frames - history * stride, n_train_frames + 1, stride)
    return TrainJudgeSplit((0, n_train_frames + 1), start, (n_train_frames + 1, n_train_frames + n_steps * stride + 1),
                           int(n_steps))
