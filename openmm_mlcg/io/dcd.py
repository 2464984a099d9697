"""CHARMM/OpenMM DCD files at the byte level: header, complete-frame count, truncation (one parser).

Used by the MD runner (resume, frame checks), the OpenMM layer (:func:`openmm_mlcg.openmm.load_dcd`, resume
helpers) and the frame-interval lookup. No OpenMM or torch import.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

__all__ = ["AKMA_TIME_PS", "read_dcd_header", "dcd_frame_count", "truncate_dcd"]

#: DCD (CHARMM/AKMA) time unit in ps, as used by openmm.app.DCDFile.
AKMA_TIME_PS = 0.04888821


def read_dcd_header(path) -> dict:
    """Read the CHARMM DCD header.

    Returns:
        dict(n_frames=int, first_step=int, interval=int (steps between frames), timestep_ps=float).

    Raises:
        FileNotFoundError: missing file. ValueError: not a DCD file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: DCD file {path} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
        raise ValueError(f"path: {path} is not a little-endian CHARMM DCD file")
    n_frames, first_step, interval = struct.unpack("<3i", head[8:20])
    (delta,) = struct.unpack("<f", head[44:48])
    return dict(n_frames=n_frames, first_step=first_step, interval=interval, timestep_ps=float(delta) * AKMA_TIME_PS)



def _dcd_layout(path: Path) -> tuple[int, int, int]:
    """(header_bytes, frame_bytes, n_frames_in_header) of a CHARMM/OpenMM DCD file."""
    n_frames = read_dcd_header(path)["n_frames"]
    with open(path, "rb") as fh:
        fh.seek(48)
        box_flag = struct.unpack("<i", fh.read(4))[0]
        fh.seek(92)
        title_bytes = struct.unpack("<i", fh.read(4))[0]
        fh.seek(104 + title_bytes)
        n_atoms = struct.unpack("<i", fh.read(4))[0]
    header = 104 + title_bytes + 8
    frame = (56 if box_flag else 0) + 3 * (8 + 4 * n_atoms)
    return header, frame, n_frames


def dcd_frame_count(path) -> int:
    """Number of complete frames stored in a DCD file (from its size, robust to a torn last frame)."""
    header, frame, _ = _dcd_layout(Path(path))
    return max(0, (Path(path).stat().st_size - header) // frame)


def truncate_dcd(path, n_frames: int) -> None:
    """Cut a DCD file to its first ``n_frames`` frames and fix the frame count in its header.

    Raises:
        ValueError: the file holds fewer than ``n_frames`` complete frames.
    """
    path = Path(path)
    header, frame, _ = _dcd_layout(path)
    have = dcd_frame_count(path)
    if have < n_frames:
        raise ValueError(f"n_frames: {path} holds {have} complete frames, cannot keep {n_frames}")
    with open(path, "r+b") as fh:
        fh.truncate(header + n_frames * frame)
        fh.seek(8)
        fh.write(struct.pack("<i", n_frames))
        fh.flush()
        os.fsync(fh.fileno())
