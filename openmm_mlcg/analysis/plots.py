"""Matplotlib (Agg) figures comparing labelled series, e.g. "learned", "reference MD", "short MD".

Every function writes a PNG atomically (openmm_mlcg.io_utils.atomic_write) and returns the path.
Series are given as ``{label: (x (k,), y (k,))}``.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from openmm_mlcg.io_utils import atomic_write  # noqa: E402

__all__ = ["save_figure", "plot_series", "plot_panels", "plot_distributions", "plot_msd", "plot_acf", "plot_rdf",
           "plot_internal_distance", "plot_collisions", "plot_contact_maps", "plot_parity"]


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
                hline: float | None = None, ncols: int = 3) -> Path:
    """Grid of panels ``{panel title: {label: (x, y)}}`` sharing the label colours, one legend."""
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False, layout="constrained")
    for ax, (title, series) in zip(axes.ravel(), panels.items()):
        _draw(ax, series, xlabel, ylabel, str(title), logx, logy, hline, None)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), frameon=False)
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


def plot_msd(panels: dict, path) -> Path:
    """MSD (nm^2) vs lag time (ps), log-log, one panel per group: ``{group: {label: (lag_ps, msd)}}``."""
    clean = {g: {k: (np.asarray(x)[1:], np.asarray(y)[1:]) for k, (x, y) in ser.items()} for g, ser in panels.items()}
    return plot_panels(clean, path, "lag time (ps)", r"MSD (nm$^2$)", logx=True, logy=True)


def plot_acf(series: dict, path, title: str = r"$R_g^2$ autocorrelation") -> Path:
    """ACF vs lag time (ps), with the 1/e level marked (paper fig. 5a)."""
    return plot_series(series, path, "lag time (ps)", "ACF", title, hline=float(np.exp(-1)))


def plot_rdf(panels: dict, path) -> Path:
    """g(r) vs r (nm), one panel per type pair ``{"A-B": {label: (r, g)}}``, g = 1 marked (paper fig. 8b)."""
    return plot_panels(panels, path, "r (nm)", "g(r)", hline=1.0)


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
