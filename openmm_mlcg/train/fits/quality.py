"""How far each post-training fit landed from the data it was fitted to, and what the trainer does about it.

Every step of :mod:`openmm_mlcg.train.fits.pipeline` grades its own final result: per bead type (or bead-type pair,
or angle type) a *miss factor* f >= 1 between what the data give and what the fitted model gives, and whether the
fitted parameter ended at a bound of its search (the fit functions' ``quality`` helpers define f for each fit).

**Rule.** A fit is ``"ok"`` when its largest f is at most :data:`WARN_FACTOR` and no parameter sits at a bound;
``"warn"`` (a ``UserWarning`` naming the fit, the worst key, the data's and the model's values and what to change)
when f is at most :data:`REFUSE_FACTOR`; above that it is refused with :class:`FitQualityError` and no bundle is
exported (the checkpoint is kept: options of the fits may change on resume without retraining). Why these values,
from the fit records at hand: the benchmarks' trained models fit within 1.0-1.8x (SPE bead types 1.0-1.4x, the
unseen polymer electrolyte 1.8x, the LJ liquid 1.07x at its friction's lower bound), so 1.5x separates a good fit
from a doubtful one; models trained for a handful of steps (the test suite's 4-12 steps) miss by 2-33x, which is a
warning, not an input error; broken inputs miss by orders of magnitude (a mass floor of 1e9 amu left the fitted
MSD 8,700-20,000x below the data's: a bundle that barely moves a bead). Two orders of magnitude (100x) is past what
any under-trained model gave and far below what a broken input gives. A parameter at a bound while the data are
matched is a warning, never a refusal (the liquid's friction at its 1e-3 /ps floor is the sampler's
fresh-velocity ceiling: the fastest the chain can move, and fast enough). The grade of every fit (status, ratio =
the largest f, at_bound, the worst key and its values) is recorded in the bundle's metadata under ``fit_quality``.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["REFUSE_FACTOR", "WARN_FACTOR", "FitQualityError", "grade", "judge", "miss_factor", "pooled_label", "public"]

#: a fit whose model misses its data by more than this factor (or whose parameter sits at a bound) warns
WARN_FACTOR = 1.5
#: a fit whose model misses its data by more than this factor is refused (no bundle)
REFUSE_FACTOR = 100.0


class FitQualityError(ValueError):
    """A post-training fit landed further from its data than :data:`REFUSE_FACTOR`; no bundle was exported."""


def miss_factor(data: float, model: float) -> float:
    """max(model / data, data / model) of two positive values (inf when one is not positive or not finite)."""
    if not (math.isfinite(data) and math.isfinite(model) and data > 0 and model > 0):
        return math.inf
    return max(model / data, data / model)


def _number(x) -> float | None:
    """``x`` as a float for the JSON metadata (None when not finite)."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


def grade(measure: str, labels: tuple[str, str], entries: Mapping[str, tuple[float, float, float]],
          at_bound: Iterable[str] = (), advice: str = "") -> dict:
    """The grade of one fit.

    Args:
        measure: what is compared (for messages), e.g. "MSD increment over the calibration lag, nm^2".
        labels: names of the two values of an entry, e.g. ("data", "model").
        entries: {key (a bead type, pair or angle type): (first value, second value, miss factor >= 1)}.
        at_bound: the keys whose fitted parameter ended at a bound of its search.
        advice: what to change when the fit warns or is refused.

    Returns:
        dict status ("ok", "warn" or "refused": :data:`WARN_FACTOR`, :data:`REFUSE_FACTOR`), ratio (the largest
        miss factor; None when infinite), at_bound (bool), bound_keys, worst (its key), the worst key's two values
        under ``labels``, measure, advice.
    """
    bound_keys = sorted(str(k) for k in at_bound)
    worst = max(entries, key=lambda k: entries[k][2]) if entries else None
    factor = float(entries[worst][2]) if worst is not None else 1.0
    status = "refused" if not factor <= REFUSE_FACTOR else "warn" if factor > WARN_FACTOR or bound_keys else "ok"
    first, second = entries[worst][:2] if worst is not None else (None, None)
    return dict(status=status, ratio=_number(factor), at_bound=bool(bound_keys), bound_keys=bound_keys,
                worst=worst, values={labels[0]: _number(first), labels[1]: _number(second)}, measure=measure,
                advice=advice)


def _describe(fit: str, q: dict) -> str:
    """One sentence on a grade that is not ok."""
    factor = "an unbounded factor" if q["ratio"] is None else f"{q['ratio']:.3g}x"
    values = ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} n/a" for k, v in q["values"].items())
    miss = f"{factor} at {q['worst']} ({q['measure']}: {values})"
    bound = f"at a bound of its search ({', '.join(q['bound_keys'])})"
    if q["status"] == "warn" and q["ratio"] is not None and q["ratio"] <= WARN_FACTOR:
        return f"the {fit} fit is {bound}; it matches its data within {miss}"
    return f"the {fit} fit misses its data by {miss}" + (f"; {bound}" if q["bound_keys"] else "")


def judge(grades: Mapping[str, dict]) -> None:
    """Warn for every graded fit whose status is "warn" and raise for the first "refused" one.

    Args:
        grades: {fit name: :func:`grade` result}.

    Raises:
        FitQualityError: a fit's status is "refused" (message: the fit, the worst bead type / pair, the data's and the
            model's values, the factor against :data:`REFUSE_FACTOR`, and what to change).
    """
    for fit, q in grades.items():
        if q["status"] == "refused":
            raise FitQualityError(f"score.fits: {_describe(fit, q)}; more than {REFUSE_FACTOR:g}x off, so no bundle "
                                  f"was exported (the checkpoint in training.out_dir is kept). {q['advice']}")
        if q["status"] != "ok":
            warnings.warn(f"score.fits: {_describe(fit, q)} (warned above {WARN_FACTOR:g}x or at a bound, refused "
                          f"above {REFUSE_FACTOR:g}x). {q['advice']}", UserWarning, stacklevel=3)


def public(grades: Mapping[str, dict]) -> dict[str, dict]:
    """The grades as the bundle's metadata keeps them (``fit_quality``)."""
    return {fit: {k: v for k, v in q.items() if k != "advice"} for fit, q in grades.items()}


def pooled_label(key: str, members: Sequence[str]) -> str:
    """A fitted group's name for messages: the bead type, or a pooled group with its bead types (the first six)."""
    members = sorted(members)
    if members == [key]:
        return key
    more = f", ... {len(members)} types" if len(members) > 6 else ""
    return f"{key} ({', '.join(members[:6])}{more})"
