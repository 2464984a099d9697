"""Model bundle: one file with the three scripted GNNs, their metadata and (optionally) the CG mapping.

Layout (a zip archive, written atomically): ``embedding.pt``, ``dynamics.pt``, ``score.pt`` (``torch.jit.save``
of the scripted modules), ``metadata.json``, optional ``mapping.npz`` (``CGMapping.save``). Loading needs torch
and numpy only (not the trainer, not torch_geometric).

Metadata: ``metadata.json`` is ``ModelMetadata.to_dict()`` (:class:`openmm_mlcg.model.ModelMetadata`, the one owner
of the schema: fields, units, defaults, validation, format versions) plus what ``save_bundle`` fills in
(format_version, package_version, export_format, created, mapping_hash, hyperparameters, n_bond_types, min_std).
:func:`load_bundle` validates it once and returns it typed (``Bundle.metadata``).

torch.export: TorchScript is deprecated upstream; ``save_bundle(..., export_format="torch.export")`` stores
ExportedPrograms instead (``*.pt2``) behind the same loader; see ``EXPORT_NOTES``.
"""
from __future__ import annotations

import datetime
import io
import json
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from .._version import __version__
from ..model import CGDynamicsModel
from ..model.metadata import FORMAT_VERSION, ModelMetadata, default_refinement_metadata
from ..util.io_utils import ZIP_EPOCH, atomic_write, check_input_file, describe_file
from .scripting import quiet_torchscript, script_module

__all__ = ["Bundle", "save_bundle", "load_bundle", "save_model", "load_model", "check_scripted_matches_eager",
           "script_module", "FORMAT_VERSION", "ExportMismatchError", "LOADABLE_FORMATS"]

#: bundle formats that load: 2 is migrated on load (score terms into one section), 1 must be retrained
LOADABLE_FORMATS = (2, FORMAT_VERSION)
MODULE_NAMES = ("embedding", "dynamics", "score")
EXPORT_FORMATS = ("torchscript", "torch.export")
EXPORT_NOTES = (
    "export_format='torch.export' stores ExportedPrograms (embedding.pt2, dynamics.pt2, score.pt2) with dynamic "
    "atom/bead/bond/edge counts; Python scalars are baked in (cutoff_nm, velocity_std as displacement scale) and "
    "n_beads is passed as a tensor length (openmm_mlcg.bundle.exported). Exporting takes ~20 s and the programs "
    "are traced on CPU, so TorchScript stays the default format (deprecation warning suppressed)."
)


class ExportMismatchError(RuntimeError):
    """An exported (scripted) module does not reproduce its eager original within tolerance."""


@dataclass
class Bundle:
    """A loaded model bundle.

    Attributes:
        embedding, dynamics, score: ``torch.jit.ScriptModule`` (EmbeddingGNN, DynamicsGNN, ScoreGNN), eval mode.
        metadata: the validated :class:`openmm_mlcg.model.ModelMetadata` (also a read-only mapping of its
            ``to_dict()`` keys, so ``bundle.metadata["stride"]`` reads an extra key).
        mapping: the CG mapping bound to the bundle (given to ``load_bundle`` or stored inside), or None.
        path: where it was loaded from (None if built in memory).
    """

    embedding: Any
    dynamics: Any
    score: Any
    metadata: ModelMetadata
    mapping: Any = None
    path: Optional[str] = field(default=None)


def _hyperparameters(module) -> Optional[Dict[str, Any]]:
    fn = getattr(module, "hyperparameters", None)
    if fn is None or isinstance(module, torch.jit.ScriptModule):
        return None
    return fn()


def save_bundle(path, embedding, dynamics, score, metadata: Mapping[str, Any], mapping=None,
                export_format: str = "torchscript") -> Path:
    """Script the three modules and write one bundle file atomically.

    Args:
        path: output file (conventionally ``*.mlcg``); parent directory must exist.
        embedding, dynamics, score: EmbeddingGNN, DynamicsGNN, ScoreGNN (eager or already scripted).
        metadata: a ModelMetadata or mapping with at least ``REQUIRED_KEYS``; refinement keys default to
            ``default_refinement_metadata()`` (:mod:`openmm_mlcg.model.metadata`);
            format_version, package_version, export_format, created, mapping_hash, hyperparameters,
            n_bond_types and min_std are filled in (explicit values for the last three are kept).
        mapping: optional CGMapping stored inside (its ``hash`` becomes ``mapping_hash``).
        export_format: "torchscript" (default) or "torch.export" (eager modules required; see EXPORT_NOTES).

    Returns:
        the path written.

    Determinism: the file's bytes depend only on the weights, the metadata and ``created`` (zip members in a
    fixed order with fixed time stamps; TorchScript constants in a fixed order, :func:`script_module`). Exports
    of the same model therefore differ only when their ``created`` differs: set ``SOURCE_DATE_EPOCH`` or pass
    ``metadata["created"]`` for identical files; re-exporting over the same model keeps its ``created``. To ask
    "same model?" regardless of ``created``, compare :func:`openmm_mlcg.openmm.state.bundle_fingerprint`.

    Raises:
        ValueError: missing/invalid/inconsistent metadata (:class:`openmm_mlcg.model.ModelMetadata`);
        ``"torch.export"`` with an energy-based Score GNN (:class:`openmm_mlcg.nn.EnergyScoreGNN`).
        FileNotFoundError: parent directory missing.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export_format: expected one of {EXPORT_FORMATS}, got {export_format!r}")
    if export_format == "torch.export" and metadata.get("neighborhood", "radius") != "radius":
        raise ValueError("export_format: 'torch.export' programs take no per-layer edge lists (neighborhood "
                         f"{metadata.get('neighborhood')!r}); use 'torchscript'")
    if export_format == "torch.export" and getattr(score, "conservative", False):
        raise ValueError("export_format: 'torch.export' cannot trace the energy-based Score GNN's autograd "
                         "gradient (EnergyScoreGNN); use 'torchscript'")
    meta: Dict[str, Any] = dict(default_refinement_metadata())
    meta.update(dict(metadata))   # a ModelMetadata is a mapping of its to_dict() keys
    meta["sigmas_nm"] = [float(s) for s in meta["sigmas_nm"]]
    hp = dict(meta.get("hyperparameters") or {})
    for name, mod in zip(MODULE_NAMES, (embedding, dynamics, score)):
        h = _hyperparameters(mod)
        if h is not None:
            hp[name] = h
    meta["hyperparameters"] = hp
    if "n_bond_types" not in meta and "embedding" in hp:
        meta["n_bond_types"] = int(hp["embedding"]["n_bond_types"])
    if "min_std" not in meta and "dynamics" in hp:
        meta["min_std"] = float(hp["dynamics"]["min_std"])
    # validated after the hyperparameters (k and the vocabulary size are compared with them), written normalised
    meta = ModelMetadata.from_dict(meta, "metadata").to_dict()
    meta.update(format_version=FORMAT_VERSION, package_version=__version__, export_format=export_format,
                created=str(metadata.get("created") or _created()),
                mapping_hash=None if mapping is None else str(mapping.hash))
    if mapping is None and metadata.get("mapping_hash") is not None:
        meta["mapping_hash"] = str(metadata["mapping_hash"])
    try:
        text = json.dumps(meta, indent=1, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"metadata: expected JSON-serialisable values ({exc})") from None

    blobs = {}
    if export_format == "torch.export":
        from .exported import export_programs

        progs = export_programs(embedding, dynamics, score, float(meta["cutoff_nm"]), float(meta["velocity_std"]))
        blobs.update({f"{name}.pt2": data for name, data in progs.items()})
    for name, mod in zip(MODULE_NAMES, (embedding, dynamics, score)):
        if export_format != "torchscript":
            break
        buf = io.BytesIO()
        scripted = script_module(mod)  # shares parameters; eval() below does not touch the eager module
        with quiet_torchscript():
            torch.jit.save(scripted.eval(), buf)
        blobs[f"{name}.pt"] = buf.getvalue()
    if mapping is not None:
        with tempfile.TemporaryDirectory() as tmp:
            mp = Path(tmp) / "mapping.npz"
            mapping.save(mp)
            blobs["mapping.npz"] = mp.read_bytes()
    path = Path(path)
    previous = _previous_created(path, meta, blobs)
    if previous is not None:  # same model re-exported: keep the first creation time, so the bytes are identical
        meta["created"] = previous
        text = json.dumps(meta, indent=1, sort_keys=True)
    with atomic_write(path, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in [("metadata.json", text.encode())] + sorted(blobs.items()):
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)  # fixed time stamps: deterministic bytes
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
    return path


#: metadata keys that do not identify the model (excluded from fingerprints and "same model" comparisons)
VOLATILE_METADATA = ("created",)


def _created() -> str:
    """ISO-8601 UTC creation time; ``SOURCE_DATE_EPOCH`` (reproducible builds) overrides the clock."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch and epoch.isdigit()
           else datetime.datetime.now(datetime.timezone.utc))
    return now.isoformat(timespec="seconds")


def _previous_created(path: Path, meta: dict, blobs: dict) -> Optional[str]:
    """``created`` of an existing bundle at ``path`` holding the same model (metadata and modules), else None."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path, "r") as zf:
            old = json.loads(zf.read("metadata.json").decode())
            if set(zf.namelist()) != set(blobs) | {"metadata.json"}:
                return None
            if any(zf.read(n) != data for n, data in blobs.items()):
                return None
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return None
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE_METADATA}  # noqa: E731
    same = json.dumps(strip(old), sort_keys=True) == json.dumps(strip(meta), sort_keys=True)
    return old.get("created") if same else None


def _major_minor(version: str):
    parts = str(version).split(".")
    return tuple(parts[:2])


def load_bundle(path, device="cpu", mapping=None) -> Bundle:
    """Load a bundle written by :func:`save_bundle`, checking versions and the mapping hash.

    Args:
        path: bundle file.
        device: torch device for the modules ("cpu", "cuda", torch.device).
        mapping: optional CGMapping to bind; must match the bundle's ``mapping_hash`` (if recorded) and the
            stored mapping (if any). If None, the stored mapping (if any) is loaded (needs openmm_mlcg.cg.mapping).

    Returns:
        Bundle with modules in eval mode on ``device``.

    Raises:
        FileNotFoundError: no such file. ValueError: a truncated or corrupt bundle ("truncated or not a bundle",
        with the file's size), not a bundle (saying what the file looks like), wrong format_version, package
        major/minor version mismatch, or mapping hash mismatch (the message names the expected and actual values).
    """
    from ..util.sanity import resolve_device

    device = resolve_device(device, "device")
    path = check_input_file(path, "a model bundle (.mlcg)", "path")
    zf = _open_bundle_zip(path)
    try:
        with zf:
            return _load_from_zip(zf, path, device, mapping)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise _truncated(path, f"{type(exc).__name__}: {exc}") from None


def _truncated(path: Path, why: str) -> ValueError:
    """The error for a bundle file that is cut short or damaged, naming it and its size."""
    return ValueError(f"path: {path} ({path.stat().st_size} bytes) is truncated or not a bundle: {why}; copy or "
                      "export it again")


def _starts_like_bundle(path: Path) -> bool:
    """Whether the file's first zip member is ``metadata.json``, as :func:`save_bundle` writes it."""
    with open(path, "rb") as fh:
        head = fh.read(30 + len("metadata.json"))
    return head[:4] == b"PK\x03\x04" and head[30:] == b"metadata.json"


def _open_bundle_zip(path: Path) -> zipfile.ZipFile:
    """The bundle's zip archive, told apart from a truncated bundle and from other files.

    A bundle cut short has lost its zip directory; ``zipfile`` then either fails or finds the directory of a
    TorchScript module stored inside (itself a zip), which lacks ``metadata.json``.

    Raises:
        ValueError: "truncated or not a bundle" (a zip that starts like a bundle but has no complete directory),
            or "not an openmm_mlcg model bundle" with what the file looks like.
    """
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, EOFError):
        zf = None
    if zf is not None and "metadata.json" in zf.namelist():
        return zf
    if zf is not None:
        zf.close()
    if _starts_like_bundle(path):
        raise _truncated(path, "it starts like a model bundle but its zip directory is missing or belongs to a "
                               "member stored inside")
    raise ValueError(f"path: {path} is not an openmm_mlcg model bundle (expected a zip archive written by "
                     f"save_bundle with a metadata.json, found {describe_file(path)})")


def _load_from_zip(zf, path: Path, device, mapping) -> Bundle:
    names = set(zf.namelist())
    try:
        meta = json.loads(zf.read("metadata.json").decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"path: {path} has a broken metadata.json (expected a JSON object, {exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"path: {path} has a broken metadata.json (expected a JSON object, found "
                         f"{type(meta).__name__})")
    fv = meta.get("format_version")
    if fv not in LOADABLE_FORMATS:
        raise ValueError(f"bundle {path}: format_version expected one of {LOADABLE_FORMATS}, got {fv!r}; bundles of "
                         f"format 1 predate the residual mean and score parametrisation of 0.2 and "
                         f"must be retrained")
    pv = meta.get("package_version")
    if pv is None or _major_minor(pv) != _major_minor(__version__):
        raise ValueError(f"bundle {path}: package_version {pv!r} was written by an incompatible openmm_mlcg "
                         f"(installed {__version__}; major.minor must match)")
    fmt = meta.get("export_format", "torchscript")
    ext = ".pt2" if fmt == "torch.export" else ".pt"
    needed = {f"{n}{ext}" for n in MODULE_NAMES}
    if not needed <= names:
        raise ValueError(f"path: {path} is not an openmm_mlcg model bundle (missing {sorted(needed - names)})")
    stored_mapping = None
    if "mapping.npz" in names and mapping is None:
        from ..cg.mapping import CGMapping  # lazy: only needed when a mapping is stored

        with tempfile.TemporaryDirectory() as tmp:
            mp = Path(tmp) / "mapping.npz"
            mp.write_bytes(zf.read("mapping.npz"))
            stored_mapping = CGMapping.load(mp)
    expected = meta.get("mapping_hash")
    if mapping is not None and expected is not None and str(mapping.hash) != expected:
        raise ValueError(f"mapping: the model was trained on another CG mapping (this one's hash {str(mapping.hash)[:12]}"
                         f"..., {mapping.n_beads} beads; the bundle's {str(expected)[:12]}...). To run it on another "
                         "system of the same atom types, pass transfer=True (LearnedIntegrator(bundle, mapping, "
                         "transfer=True)); otherwise pass mapping=None to use the bundle's own mapping")
    if stored_mapping is not None and expected is not None and str(stored_mapping.hash) != expected:
        raise ValueError(f"bundle {path}: stored mapping hash {stored_mapping.hash} does not match "
                         f"metadata mapping_hash {expected} (corrupted bundle)")
    if fmt == "torch.export":
        from .exported import load_programs

        progs = load_programs({n: zf.read(f"{n}.pt2") for n in MODULE_NAMES}, float(meta["cutoff_nm"]),
                              float(meta["velocity_std"]), torch.device(device))
        modules = [progs[n] for n in MODULE_NAMES]
    else:
        modules = []
        for n in MODULE_NAMES:
            try:
                with quiet_torchscript():
                    modules.append(torch.jit.load(io.BytesIO(zf.read(f"{n}.pt")),
                                                  map_location=torch.device(device)).eval())
            except RuntimeError as exc:
                raise ValueError(f"path: {path}: {n}.pt is not a loadable TorchScript module (corrupt bundle? "
                                 f"{str(exc).splitlines()[0]})") from None
    return Bundle(*modules, metadata=ModelMetadata.from_dict(meta, f"bundle {path}: metadata"),
                  mapping=mapping if mapping is not None else stored_mapping, path=str(path))


def save_model(model: CGDynamicsModel, path, mapping=None, export_format: str = "torchscript") -> Path:
    """Write a :class:`~openmm_mlcg.model.CGDynamicsModel` as a bundle file (:func:`save_bundle` of its GNNs and
    its metadata); arguments and errors as :func:`save_bundle`."""
    return save_bundle(path, model.embedding, model.dynamics, model.score, model.metadata, mapping=mapping,
                       export_format=export_format)


def load_model(path, device="cpu", mapping=None) -> CGDynamicsModel:
    """Load a bundle file as a :class:`~openmm_mlcg.model.CGDynamicsModel` (eval mode on ``device``).

    Raises:
        FileNotFoundError / ValueError: see :func:`load_bundle`; ValueError for invalid or inconsistent metadata
        (old bundles of format 1 are refused with the reason: retrain them).
    """
    return CGDynamicsModel.from_bundle(load_bundle(path, device=device, mapping=mapping), device)


def check_scripted_matches_eager(eager_modules, bundle: Bundle, example_inputs: Mapping[str, Sequence],
                                 atol: float = 1e-5) -> Dict[str, float]:
    """Run eager and exported modules on the same inputs and compare every tensor output.

    Args:
        eager_modules: dict name -> module or tuple (embedding, dynamics, score) (eval mode is set).
        bundle: Bundle (or anything with ``.embedding``/``.dynamics``/``.score``).
        example_inputs: dict name -> tuple of positional arguments for that module (names in
            "embedding", "dynamics", "score"; missing names are skipped).
        atol: max allowed absolute difference.

    Returns:
        dict name -> max absolute difference.

    Raises:
        ExportMismatchError: a difference exceeds ``atol`` or output structures differ.
        ValueError: unknown module name.
    """
    if not isinstance(eager_modules, Mapping):
        eager_modules = dict(zip(MODULE_NAMES, eager_modules))
    diffs = {}
    for name, args in example_inputs.items():
        if name not in MODULE_NAMES:
            raise ValueError(f"example_inputs: expected keys among {MODULE_NAMES}, got {name!r}")
        eager = eager_modules[name].eval()
        exported = getattr(bundle, name)
        with torch.no_grad():
            a, b = eager(*args), exported(*args)
        a = list(a) if isinstance(a, (tuple, list)) else [a]
        b = list(b) if isinstance(b, (tuple, list)) else [b]
        if len(a) != len(b):
            raise ExportMismatchError(f"{name}: eager returns {len(a)} outputs, exported {len(b)}")
        d = max((float((x.double() - y.double()).abs().max()) if x.numel() else 0.0) for x, y in zip(a, b))
        diffs[name] = d
        if not d <= atol:
            raise ExportMismatchError(f"{name}: exported module differs from eager by {d:.3g} > atol={atol}")
    return diffs
