"""Unit handling at public boundaries.

Every public function of openmm_mlcg takes plain floats/arrays in OpenMM's units (nm, ps, amu, kJ/mol, K)
or ``openmm.unit`` Quantities, which are converted here.
"""
from __future__ import annotations

import numpy as np
from openmm import unit as _u

__all__ = ["to_float", "to_array"]


def _strip(value, target_unit, name: str):
    if _u.is_quantity(value):
        if not value.unit.is_compatible(target_unit):
            raise ValueError(
                f"{name}: expected a quantity compatible with {target_unit}, got unit {value.unit}"
            )
        return value.value_in_unit(target_unit)
    return value


def to_float(value, target_unit, name: str) -> float:
    """Convert a number or ``openmm.unit.Quantity`` to a float in ``target_unit``.

    Args:
        value: float/int (taken to be in ``target_unit`` already) or Quantity.
        target_unit: an ``openmm.unit`` unit, e.g. ``unit.nanometer``.
        name: argument name used in error messages.

    Raises:
        ValueError: incompatible unit, or the value is not a finite real number.
    """
    raw = _strip(value, target_unit, name)
    try:
        out = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a real number in {target_unit}, got {value!r}") from None
    if not np.isfinite(out):
        raise ValueError(f"{name}: expected a finite number, got {out}")
    return out


def to_array(value, target_unit, name: str) -> np.ndarray:
    """Convert an array-like or Quantity (e.g. a list of ``Vec3`` in nm) to a float64 ndarray in ``target_unit``.

    Raises:
        ValueError: incompatible unit, non-numeric data, or NaN/inf entries.
    """
    raw = _strip(value, target_unit, name)
    if isinstance(raw, (list, tuple)) and raw and _u.is_quantity(raw[0]):
        raw = [_strip(v, target_unit, name) for v in raw]
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numeric data in {target_unit}, got {type(value).__name__}") from None
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, found {bad} NaN/inf entries")
    return arr
