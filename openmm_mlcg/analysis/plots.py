"""Matplotlib (Agg) figures comparing labelled series, e.g. "learned", "reference MD", "short MD".

Every function writes a PNG atomically (openmm_mlcg.util.io_utils.atomic_write) and returns the path.
Series are given as ``{label: (x (k,), y (k,))}``.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from openmm_mlcg.util.io_utils import atomic_write  # noqa: E402

__all__ = ["save_figure", "plot_series", "plot_panels", "plot_distributions", "plot_msd", "plot_acf", "plot_rdf",
           "plot_internal_distance", "plot_collisions", "plot_contact_maps", "plot_parity", "plot_headline",
           "plot_training_log"]


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path


def _draw(ax, series: dict, xlabel, ylabel, title, logx, logy, hline, marker):
    for k, (label, (x, y)) in enumerate(series.items()):
        ax.plot(np.asarray(x), np.asarray(y), label=str(label), marker=marker, color=f"C{k}")
    if hline is not None:
        ax.axhline(hline, color="k", ls=":", lw=0.8)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    for axis, log in ((ax.xaxis, logx), (ax.yaxis, logy)):
        if log:  # minor labels overlap on ranges below a decade
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)


def plot_series(series: dict, path, xlabel: str, ylabel: str, title: str = "", logx: bool = False,
                logy: bool = False, hline: float | None = None, marker: str | None = None) -> Path:
    """Line plot of several labelled (x, y) series on one axis."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    _draw(ax, series, xlabel, ylabel, title, logx, logy, hline, marker)
    if series:
        ax.legend(frameon=False)
    return save_figure(fig, path)


def plot_panels(panels: dict, path, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False,
                hline: float | None = None, ncols: int = 3, fits: dict | None = None, title: str = "") -> Path:
    """Grid of panels ``{panel title: {label: (x, y)}}`` sharing the label colours, one legend.

    ``fits``: optional ``{panel title: {label: (x, y)}}`` drawn as dashed lines in the label's colour.
    """
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False, layout="constrained")
    for ax, (name, series) in zip(axes.ravel(), panels.items()):
        _draw(ax, series, xlabel, ylabel, str(name), logx, logy, hline, None)
        colours = {label: f"C{k}" for k, label in enumerate(series)}
        for label, (x, y) in (fits or {}).get(name, {}).items():
            ax.plot(np.asarray(x), np.asarray(y), ls="--", lw=1.2, color=colours.get(label, "k"))
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:  # legend at the bottom when a title takes the top
        fig.legend(handles, labels, loc="outside lower center" if title else "outside upper center",
                   ncols=len(labels), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_distributions(samples: dict, path, xlabel: str = r"$R_g^2$ (nm$^2$)", bins: int = 50,
                       title: str = "") -> Path:
    """Histograms (density) of several samples on shared bins, dashed line at each mean (paper fig. 4 row 1)."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    allv = np.concatenate([np.ravel(v) for v in samples.values()]) if samples else np.zeros(1)
    edges = np.histogram_bin_edges(allv, bins=bins)
    for k, (label, v) in enumerate(samples.items()):
        v = np.ravel(v)
        color = f"C{k}"
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.5, color=color, label=str(label))
        ax.axvline(v.mean(), color=color, ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability density")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return save_figure(fig, path)


def plot_msd(panels: dict, path, fits: dict | None = None, title: str = "") -> Path:
    """MSD (nm^2) vs lag time (ps), log-log, one panel per group: ``{group: {label: (lag_ps, msd)}}``.

    ``fits``: ``{group: {label: (t0, t1, slope_nm2_per_ps, intercept_nm2)}}``: the fitted line
    ``intercept + slope t`` over the fit window, dashed.
    """
    clean = {g: {k: (np.asarray(x)[1:], np.asarray(y)[1:]) for k, (x, y) in ser.items()} for g, ser in panels.items()}
    lines = {}
    for g, per in (fits or {}).items():
        for label, (t0, t1, slope, icpt) in per.items():
            t = np.geomspace(max(t0, 1e-12), t1, 20)
            y = icpt + slope * t
            if np.all(y > 0):  # a log axis cannot show non-positive fit values
                lines.setdefault(g, {})[label] = (t, y)
    return plot_panels(clean, path, "lag time (ps)", r"MSD (nm$^2$)", logx=True, logy=True, fits=lines,
                       title=title or "MSD (solid) and diffusivity fit over its window (dashed)")


def plot_acf(series: dict, path, title: str = r"$R_g^2$ autocorrelation") -> Path:
    """ACF vs lag time (ps), with the 1/e level marked (paper fig. 5a)."""
    return plot_series(series, path, "lag time (ps)", "ACF", title, hline=float(np.exp(-1)))


def plot_rdf(panels: dict, path, title: str = "") -> Path:
    """g(r) vs r (nm), one panel per type pair ``{"A-B": {label: (r, g)}}``, g = 1 marked (paper fig. 8b)."""
    return plot_panels(panels, path, "r (nm)", "g(r)", hline=1.0, title=title)


def plot_internal_distance(series: dict, path, title: str = "") -> Path:
    """Mean internal distance R(s) (nm) vs s on log-log axes (paper fig. 4 row 2)."""
    return plot_series(series, path, "s (beads)", "R(s) (nm)", title, logx=True, logy=True)


def plot_collisions(panels: dict, path) -> Path:
    """Bead collisions vs time (ps), one panel per cut-off ``{cutoff_nm: {label: (time, count)}}`` (fig. 8a)."""
    titled = {f"r < {float(c):g} nm": ser for c, ser in panels.items()}
    return plot_panels(titled, path, "time (ps)", "colliding pairs")


def plot_contact_maps(maps: dict, path, reference: str | None = None, title: str = "") -> Path:
    """Contact maps side by side; with ``reference`` also |map - reference| for the others (paper fig. 5b)."""
    panels = [(str(k), np.asarray(v), "viridis") for k, v in maps.items()]
    if reference is not None and reference in maps:
        ref = np.asarray(maps[reference])
        panels += [(f"|{k} - {reference}|", np.abs(np.asarray(v) - ref), "magma")
                   for k, v in maps.items() if k != reference]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.9), squeeze=False,
                             layout="constrained")
    for ax, (label, m, cmap) in zip(axes[0], panels):
        im = ax.imshow(m, vmin=0, vmax=1, cmap=cmap, origin="lower")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("bead")
    axes[0][0].set_ylabel("bead")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="contact fraction")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_parity(reference, predicted: dict, path, quantity: str, title: str = "") -> Path:
    """Predicted vs reference scatter for several methods with the y = x line (paper figs. 3, 5c, 9)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    ref = np.ravel(reference)
    for label, y in predicted.items():
        ax.scatter(ref, np.ravel(y), s=14, label=str(label))
    lo, hi = float(np.nanmin(ref)), float(np.nanmax(ref))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"reference {quantity}")
    ax.set_ylabel(f"predicted {quantity}")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return save_figure(fig, path)


def plot_headline(diffusivity: dict, rdf_error: dict, path, title: str = "") -> Path:
    """Two panels: diffusivity bars per species and label (log scale), mean RDF error per label.

    Args:
        diffusivity: {label: {species: D cm^2/s}} (e.g. learned / short MD / reference MD x Li+ / TFSI-).
        rdf_error: {label: mean |g - g_ref|} for the labels compared with the reference.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained",
                                   gridspec_kw=dict(width_ratios=[3, 2]))
    labels = list(diffusivity)
    species = sorted({sp for v in diffusivity.values() for sp in v})
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        vals = [diffusivity[label].get(sp, np.nan) for sp in species]
        ax1.bar(np.arange(len(species)) + (k - (len(labels) - 1) / 2) * width, vals, width, label=str(label),
                color=f"C{k}")
    ax1.set_xticks(np.arange(len(species)), species)
    ax1.set_yscale("log")
    ax1.set_ylabel(r"D (cm$^2$/s)")
    ax1.set_title("diffusivity", fontsize=10)
    ax1.legend(frameon=False, fontsize=8)
    colours = {label: f"C{k}" for k, label in enumerate(labels)}
    names = list(rdf_error)
    ax2.bar(np.arange(len(names)), [rdf_error[n] for n in names], color=[colours.get(n, "grey") for n in names])
    ax2.set_xticks(np.arange(len(names)), names)
    ax2.set_ylabel(r"mean $|g - g_{ref}|$")
    ax2.set_title("RDF error vs reference (mean over pairs)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_training_log(log_csv, path) -> Path:
    """Training curves from the trainer's log.csv: loss, NLL and score loss per step, validation NLL points."""
    import csv

    with open(log_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    step = np.array([float(r["step"]) for r in rows])
    window = max(1, len(rows) // 50)  # long runs: faint per-step values and a running mean
    for k, key in enumerate(("loss", "nll", "score_loss")):
        y = np.array([float(r[key]) for r in rows])
        if window > 1:
            ax.plot(step, y, lw=0.5, alpha=0.3, color=f"C{k}")
            y = np.convolve(y, np.ones(window), mode="same") / np.convolve(np.ones_like(y), np.ones(window), mode="same")
        ax.plot(step, y, lw=1, color=f"C{k}", label=key + (f" (mean of {window})" if window > 1 else ""))
    val = [(float(r["step"]), float(r["val_nll"])) for r in rows if r.get("val_nll") not in (None, "", "nan")]
    val = [(a, b) for a, b in val if np.isfinite(b)]
    if val:
        ax.plot(*zip(*val), "o-", color="C3", label="validation NLL")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title("training", fontsize=10)
    ax.legend(frameon=False)
    return save_figure(fig, path)
