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
        dict(n_frames=int (as the header records it), first_step=int (step of the first frame),
        interval=int (steps between frames), timestep_ps=float (the integrator's step), n_atoms=int).

    Raises:
        FileNotFoundError: missing file. ValueError: not a DCD file, or a header cut short.
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
    return dict(n_frames=n_frames, first_step=first_step, interval=interval, timestep_ps=float(delta) * AKMA_TIME_PS,
                n_atoms=_dcd_layout(path)[3])


def _read_int(fh, offset: int, path: Path) -> int:
    fh.seek(offset)
    raw = fh.read(4)
    if len(raw) < 4:
        raise ValueError(f"path: {path} is a DCD file whose header is cut short ({path.stat().st_size} bytes)")
    return struct.unpack("<i", raw)[0]


def _dcd_layout(path: Path) -> tuple[int, int, int, int]:
    """(header_bytes, frame_bytes, n_frames_in_header, n_atoms) of a CHARMM/OpenMM DCD file (header checked by
    the caller)."""
    with open(path, "rb") as fh:
        n_frames = _read_int(fh, 8, path)
        box_flag = _read_int(fh, 48, path)
        title_bytes = _read_int(fh, 92, path)
        n_atoms = _read_int(fh, 104 + title_bytes, path)
    if title_bytes < 0 or n_atoms <= 0:
        raise ValueError(f"path: {path} is a DCD file with a corrupt header ({n_atoms} atoms, title of "
                         f"{title_bytes} bytes)")
    header = 104 + title_bytes + 8
    frame = (56 if box_flag else 0) + 3 * (8 + 4 * n_atoms)
    return header, frame, n_frames, n_atoms


def dcd_frame_count(path) -> int:
    """Number of complete frames stored in a DCD file (from its size, robust to a torn last frame).

    Raises:
        FileNotFoundError: missing file. ValueError: not a DCD file, or a corrupt header.
    """
    read_dcd_header(path)
    header, frame, _, _ = _dcd_layout(Path(path))
    return max(0, (Path(path).stat().st_size - header) // frame)


def truncate_dcd(path, n_frames: int) -> None:
    """Cut a DCD file to its first ``n_frames`` frames and fix the frame count in its header.

    Raises:
        ValueError: the file holds fewer than ``n_frames`` complete frames.
    """
    path = Path(path)
    header, frame, _, _ = _dcd_layout(path)
    have = dcd_frame_count(path)
    if have < n_frames:
        raise ValueError(f"n_frames: {path} holds {have} complete frames, cannot keep {n_frames}")
    with open(path, "r+b") as fh:
        fh.truncate(header + n_frames * frame)
        fh.seek(8)
        fh.write(struct.pack("<i", n_frames))
        fh.flush()
        os.fsync(fh.fileno())
