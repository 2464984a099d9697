"""Serialisable state of :class:`~openmm_mlcg.openmm.LearnedIntegrator`: bundle fingerprint, RNG scheme, npz files.

The integrator keeps its whole dynamic state inside OpenMM integrator variables so that OpenMM's own
checkpoints (``Context.createCheckpoint``, ``Simulation.saveCheckpoint``, ``CheckpointReporter``) and State
XML (``Simulation.saveState``) carry it:

* per-DOF variables ``h0`` .. ``h{k-1}``: the k history velocities (nm per model step, oldest first) and
  ``x_last``: the positions the integrator last wrote (nm), used to detect external position changes;
* global variables (see :data:`GLOBALS`): format version, seed, refine/deterministic flags, whether a history
  exists, the bundle fingerprint (128 bits as four 32-bit numbers, since globals are doubles) and a sync token.

The sync token (format 2) carries a check value of the integrator's own record: ``token = crc << 20 | nonce``
with ``crc`` = :func:`record_checksum` of the history, ``x_last``, the history flag, the fingerprint words and the
format version, and a random 20-bit ``nonce`` >= 1 (token 0: nothing written yet). A record cut short or mixed
with another run's (a truncated checkpoint, a foreign State) no longer matches its check value
(:func:`verify_record`). Format 1 records (no check value) are still read.

Random numbers are counter based: model step ``s`` (the Context step count before the step) draws its noise from
a fresh ``torch.Generator`` seeded with :func:`step_seed` ``(seed, s)``. The RNG state is therefore just
(seed, step count), both of which are checkpointed, and a run is independent of how it is split into
``step()`` calls.
"""
from __future__ import annotations

import hashlib
import json
import random
import zlib

import numpy as np
import openmm
from openmm import unit

from ..util.io_utils import atomic_write, write_npz

__all__ = ["GLOBALS", "FORMAT_VERSION", "READABLE_FORMATS", "bundle_fingerprint", "accepted_ids",
           "encode_fingerprint", "decode_fingerprint", "step_seed", "write_state_file", "read_state_file",
           "context_arrays", "restore_context", "record_checksum", "make_token", "verify_record"]

#: version of the variable layout below (stored in global ``mlcg_format``): 2 = the sync token carries a check value.
FORMAT_VERSION = 2
#: versions that load: 1 (no check value) and the current one
READABLE_FORMATS = (1, FORMAT_VERSION)
_NONCE_BITS = 20
_NONCE_RNG = random.Random()  # its own stream: the user's ``random`` sequence is left alone
#: global variables of a LearnedIntegrator and their initial values.
GLOBALS = {"mlcg_format": float(FORMAT_VERSION), "seed": 0.0, "refine": 1.0, "deterministic": 0.0,
           "history_ready": 0.0, "bundle_id0": 0.0, "bundle_id1": 0.0, "bundle_id2": 0.0, "bundle_id3": 0.0,
           "sync_token": 0.0}
_FP_WORDS = 4
MAX_SEED = 2**53 - 1


def bundle_fingerprint(bundle) -> str:
    """SHA-256 (hex) of a bundle's metadata (JSON, sorted keys) and every parameter/buffer of its modules.

    Identifies the *model* a checkpoint was written with, independently of the file path and of the export
    time (``created`` is left out).
    """
    from ..bundle.export import VOLATILE_METADATA

    h = hashlib.sha256()
    meta = {k: v for k, v in bundle.metadata.items() if k not in VOLATILE_METADATA}  # identical training, same id
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in ("embedding", "dynamics", "score"):
        module = getattr(bundle, name, None)
        if module is None:
            continue
        for key, tensor in sorted(module.state_dict().items()):
            h.update(f"{name}.{key}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def accepted_ids(bundle, fingerprint: str) -> frozenset:
    """Fingerprints (full and the 128-bit prefix kept in integrator globals) a checkpoint of ``bundle`` may carry:
    the current one and the one earlier builds wrote, which also hashed the export time ``created``."""
    h = hashlib.sha256()
    h.update(json.dumps(dict(bundle.metadata), sort_keys=True, default=str).encode())
    for name in ("embedding", "dynamics", "score"):
        module = getattr(bundle, name, None)
        for key, tensor in sorted(module.state_dict().items()) if module is not None else ():
            h.update(f"{name}.{key}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    legacy = h.hexdigest()
    return frozenset({fingerprint, fingerprint[:32], legacy, legacy[:32]})


def encode_fingerprint(hex_digest: str) -> list[float]:
    """First 128 bits of a hex digest as four exact float values (each < 2**32) for OpenMM global variables."""
    return [float(int(hex_digest[8 * i: 8 * i + 8], 16)) for i in range(_FP_WORDS)]


def decode_fingerprint(values) -> str:
    """Inverse of :func:`encode_fingerprint`: four floats -> 32 hex characters."""
    return "".join(f"{int(round(v)):08x}" for v in values)


def step_seed(seed: int, step: int) -> int:
    """Seed (in [0, 2**63)) of the torch.Generator used for model step ``step`` of a run with ``seed``.

    Derived with ``numpy.random.SeedSequence([seed, step])`` so nearby (seed, step) pairs give independent streams.
    """
    words = np.random.SeedSequence([int(seed), int(step)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def write_state_file(path, **arrays) -> None:
    """Write ``arrays`` (name -> array-like) to an ``.npz`` file atomically (see ``io_utils.atomic_write``).

    Raises:
        FileNotFoundError: the parent directory does not exist.
    """
    with atomic_write(path, "wb") as fh:
        write_npz(fh, {k: np.asarray(v) for k, v in arrays.items()})


def read_state_file(path) -> dict:
    """Read an ``.npz`` written by :func:`write_state_file` into a dict of numpy arrays.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a LearnedIntegrator state file (missing ``mlcg_format``) or an unknown version.
    """
    from pathlib import Path

    from ..io.readers import read_npz

    out = read_npz(Path(path), "LearnedIntegrator state")
    if "mlcg_format" not in out:
        raise ValueError(f"path: {path} is not a LearnedIntegrator state file (no 'mlcg_format' entry)")
    if int(out["mlcg_format"]) not in READABLE_FORMATS:
        raise ValueError(f"path: {path} has state format version {int(out['mlcg_format'])}, expected one of "
                         f"{READABLE_FORMATS}")
    return out


def record_checksum(history, x_last, ready: bool, fingerprint_words, version: float) -> int:
    """CRC-32 of a LearnedIntegrator's own record: ``history`` (k, n, 3) and ``x_last`` (n, 3) rounded to
    float32 (what single-precision platforms keep of per-DOF variables), the history flag, the four fingerprint
    words and the format version."""
    crc = zlib.crc32(np.asarray(history, dtype=np.float32).tobytes())
    crc = zlib.crc32(np.asarray(x_last, dtype=np.float32).tobytes(), crc)
    flags = np.asarray([float(bool(ready)), *map(float, fingerprint_words), float(version)], dtype=np.float64)
    return zlib.crc32(flags.tobytes(), crc)


def make_token(checksum: int) -> float:
    """A sync token (exact as a double, never 0) carrying ``checksum`` and a random nonce."""
    return float((int(checksum) << _NONCE_BITS) | _NONCE_RNG.randrange(1, 1 << _NONCE_BITS))


def verify_record(values: dict, history, x_last, source: str) -> None:
    """Check a LearnedIntegrator record read back from a Context against its check value.

    Args:
        values: the global variables (:data:`GLOBALS` names -> values) as read from the Context.
        history, x_last: the per-DOF variables as read. source: what the record came from, for messages
            (e.g. "checkpoint run.chk").

    Raises:
        ValueError: an unknown format version, or a record that does not match its check value (a truncated or
            corrupt checkpoint/State, or one mixed from two runs); the message names ``source`` and both values.
    """
    version, token = values["mlcg_format"], values["sync_token"]
    if version not in READABLE_FORMATS:
        raise ValueError(f"{source}: the LearnedIntegrator record has format version {version:g}, expected one of "
                         f"{READABLE_FORMATS}: truncated, corrupt or not written by a LearnedIntegrator")
    words = [values[f"bundle_id{i}"] for i in range(_FP_WORDS)]
    pristine = (token == 0 and any(words) and not values["history_ready"] and not np.any(history)
                and not np.any(x_last))  # as the constructor left it: nothing written yet
    if version < 2 or pristine:
        return
    actual = record_checksum(history, x_last, bool(values["history_ready"]), words, version)
    expected = int(token) >> _NONCE_BITS if np.isfinite(token) and 0 <= token < 2.0**53 else -1
    if actual != expected:
        raise ValueError(f"{source}: the LearnedIntegrator record (history velocities, last positions, flags) does "
                         f"not match its check value: expected CRC-32 {expected:08x} (sync token {token!r}), found "
                         f"{actual:08x}; the checkpoint or State is truncated, corrupt or mixed from two runs")


def context_arrays(context) -> dict:
    """positions (n, 3) nm, box (3, 3) nm, time_ps, step_count of a Context (for :func:`write_state_file`)."""
    st = context.getState(getPositions=True)
    return dict(positions=st.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                box=st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer),
                time_ps=st.getTime().value_in_unit(unit.picosecond), step_count=context.getStepCount())


def restore_context(context, data: dict, dt_ps: float) -> None:
    """Set box, positions, velocities (last history velocity / ``dt_ps``, nm/ps), time and step count of
    ``context`` from a dict read by :func:`read_state_file`.

    Raises:
        ValueError: the positions do not match the Context's particle count.
    """
    n = context.getSystem().getNumParticles()
    if data["positions"].shape != (n, 3):
        raise ValueError(f"path: state positions have shape {data['positions'].shape}, the Context has {n} particles")
    context.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in data["box"]])
    context.setPositions(data["positions"])
    history = data["history"]
    context.setVelocities(history[-1] / dt_ps if len(history) else np.zeros_like(data["positions"]))
    context.setTime(float(data["time_ps"]))
    context.setStepCount(int(data["step_count"]))
