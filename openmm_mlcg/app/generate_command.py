"""``openmm-mlcg generate spe|polymer``: check the options by their command-line names, then run the builders.

The library functions (:func:`openmm_mlcg.systems.spe.generate`, :func:`openmm_mlcg.systems.polymer.generate`)
check their own arguments too, but name them as Python arguments (``training_ps``, ``production_tau``); here
every option is checked first and a bad one is named as typed (``--production-ps``), with its expected range.
"""
from __future__ import annotations

import math

__all__ = ["check_production", "frame_interval", "generate_command"]


def frame_interval(kind: str, scale: str, polymer_class: str) -> float:
    """ps (tau for polymers) between saved frames of ``generate KIND`` at ``scale``."""
    if kind == "spe":
        from ..systems.spe import FRAME_INTERVAL_PS

        return float(FRAME_INTERVAL_PS)
    from ..systems.polymer import load_params

    return float(load_params()["protocol"][scale][polymer_class]["frame_interval_tau"])


def check_production(value, interval: float, unit_name: str):
    """``--production-ps``: None (the scale's default) or a positive multiple of the frame interval.

    Raises:
        ValueError: naming ``--production-ps``, the expected range and the value.
    """
    if value is None:
        return None
    v = float(value)
    n = round(v / interval) if math.isfinite(v) else 0
    if not (v > 0 and n >= 1 and math.isclose(n * interval, v, rel_tol=1e-6)):
        raise ValueError(f"--production-ps: expected a positive multiple of the frame interval {interval:g} "
                         f"{unit_name} (e.g. {interval:g}, {2 * interval:g}, {50 * interval:g}), got {value:g}")
    return v


def _check_count(value, option: str, minimum: int = 1) -> int:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option}: expected an integer >= {minimum}, got {value!r}")
    return value


def generate_command(args) -> list:
    """Check the options of parsed ``args`` and run the generator; returns the system directories.

    Raises:
        ValueError: a bad option (named as on the command line) or a failure of the builder.
    """
    _check_count(args.n_systems, "--n-systems")
    _check_count(args.workers, "--workers")
    _check_count(args.length, "--length")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and "://" not in scheduler:
        raise ValueError(f"--scheduler: expected a Dask scheduler address such as tcp://10.0.0.1:8786, got "
                         f"{scheduler!r}")
    common = {"n_systems": args.n_systems, "out_dir": args.out, "seed": args.seed, "platform": args.platform,
                  "scale": args.scale, "n_workers": args.workers, "scheduler": scheduler}
    polymer_class = args.polymer_class or "class1"
    interval = frame_interval(args.kind, args.scale, polymer_class)
    if args.kind == "spe":
        from ..systems.packing import COPOLYMER_SYNTAX
        from ..systems.spe import generate, parse_polymer

        if args.polymer_class is not None:
            raise ValueError(f"--polymer-class: only for `generate polymer` (spe takes --polymer), got "
                             f"{args.polymer_class}")
        for spec in args.polymer or []:
            try:
                parse_polymer(spec)
            except ValueError as exc:
                raise ValueError(f"--polymer: {spec!r}: {str(exc).removeprefix('polymer: ')}") from None
        if args.polymer is not None and not args.polymer:
            raise ValueError(f"--polymer: expected one or more polymers, each {COPOLYMER_SYNTAX}; got none")
        kwargs = {"polymers": args.polymer, "chain_length": args.length,
                      "training_ps": check_production(args.production_ps, interval, "ps")}
    else:
        from ..systems.polymer import generate

        if args.polymer is not None:
            raise ValueError(f"--polymer: only for `generate spe` (polymer takes --polymer-class), got "
                             f"{' '.join(args.polymer)}")
        kwargs = {"kind": polymer_class, "length": args.length,
                      "production_tau": check_production(args.production_ps, interval, "tau (= ps)")}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return list(generate(**common, **kwargs) or [])
