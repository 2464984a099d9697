"""The training log (``log.csv``, one row per step) and the end-of-training summary."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from openmm_mlcg.util.io_utils import atomic_write

__all__ = ["LOG_COLUMNS", "read_log", "write_log", "training_summary"]

LOG_COLUMNS = ["step", "loss", "nll", "score_loss", "val_nll", "lr", "samples_per_s"]


def training_summary(log_path, bundle, wall_s: float, baseline_nll: float = float("nan")) -> str:
    """End-of-training lines: steps, final train loss / NLL, last validation NLL beside the linear-in-history
    baseline's (:mod:`openmm_mlcg.train.baseline`), time, bundle path."""
    rows = read_log(Path(log_path), 10**12)
    if not rows:
        return f"training: no steps logged; bundle {bundle}"
    last = rows[-1]
    val = [r["val_nll"] for r in rows if r.get("val_nll") not in (None, "", "nan")]
    val_text = f"{float(val[-1]):.4g}" if val else "n/a (no validation windows: data.val_fraction)"
    if val and np.isfinite(baseline_nll):
        val_text += f" (linear-in-history baseline {baseline_nll:.4g})"
    return (f"training done: {last['step']} steps, final train loss {float(last['loss']):.4g} "
            f"(NLL {float(last['nll']):.4g}, score {float(last['score_loss']):.4g}), validation NLL {val_text}, "
            f"{wall_s:.1f} s in total\nbundle: {bundle}")


def read_log(path: Path, upto: int) -> list:
    """Rows of ``log.csv`` up to step ``upto`` (none when the file is missing)."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if int(row["step"]) <= upto]


def write_log(path: Path, rows: list) -> None:
    """Write ``log.csv`` with these rows, atomically."""
    with atomic_write(path, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)
