"""Matplotlib (Agg) figures comparing labelled series, e.g. "learned", "reference MD", "short MD".

Every ``plot_*`` function writes a PNG atomically (openmm_mlcg.util.io_utils.atomic_write) and returns the path;
the ``*_figure`` functions behind some of them return the open :class:`matplotlib.figure.Figure` instead (for
inspection; close it with ``plt.close``). Series are given as ``{label: (x (k,), y (k,))}``; a label keeps one
colour across the panels of a figure. A figure with nothing to show is one line of text saying so
(:func:`message_figure`).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from openmm_mlcg.util.io_utils import atomic_write

__all__ = [
    "BarPanel",
    "collisions_figure",
    "draw_bar_panel",
    "headline_figure",
    "message_figure",
    "panels_figure",
    "plot_acf",
    "plot_collisions",
    "plot_contact_maps",
    "plot_distributions",
    "plot_headline",
    "plot_internal_distance",
    "plot_msd",
    "plot_panels",
    "plot_parity",
    "plot_rdf",
    "plot_series",
    "plot_training_log",
    "save_figure",
    "wrap_label",
]


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path


def wrap_label(text, width: int = 14) -> str:
    """``text`` wrapped at spaces to lines of at most ``width`` characters (its own line breaks kept)."""
    return "\n".join(textwrap.fill(line, width, break_long_words=False) or line for line in str(text).split("\n"))


def message_figure(text: str):
    """A figure holding one line of ``text`` (as wide as the text needs) and no axes: what an empty plot shows
    instead."""
    fig = plt.figure(figsize=(max(4.0, 0.075 * len(text) + 0.8), 1.0))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=10)
    return fig


def _series_colours(groups) -> dict:
    """{label: "Ck"} by first appearance over the label dicts ``groups`` (one colour per label per figure)."""
    labels = dict.fromkeys(str(label) for group in groups for label in group)
    return {label: f"C{k}" for k, label in enumerate(labels)}


def _figure_legend(fig, axes, loc: str) -> None:
    """One legend for the figure: the labelled handles of all ``axes``, each label once."""
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc=loc, ncols=min(len(handles), 6), frameon=False,
                   fontsize=9)


def _draw(ax, series: dict, xlabel, ylabel, title, logx, logy, hline, marker, colours=None):
    for k, (label, (x, y)) in enumerate(series.items()):
        ax.plot(np.asarray(x), np.asarray(y), label=str(label), marker=marker,
                color=(colours or {}).get(str(label), f"C{k}"))
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
        ax.set_title(wrap_label(title, 48), fontsize=10)


def plot_series(series: dict, path, xlabel: str, ylabel: str, title: str = "", logx: bool = False,
                logy: bool = False, hline: float | None = None, marker: str | None = None) -> Path:
    """Line plot of several labelled (x, y) series on one axis."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    _draw(ax, series, xlabel, ylabel, title, logx, logy, hline, marker)
    if series:
        ax.legend(frameon=False)
    return save_figure(fig, path)


def plot_panels(panels: dict, path, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False,
                hline: float | None = None, ncols: int = 3, fits: dict | None = None, title: str = "",
                notes: dict | None = None, ymin: float | None = None) -> Path:
    """:func:`panels_figure` written to ``path``."""
    return save_figure(panels_figure(panels, xlabel, ylabel, logx, logy, hline, ncols, fits, title, notes, ymin), path)


def panels_figure(panels: dict, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False,
                  hline: float | None = None, ncols: int = 3, fits: dict | None = None, title: str = "",
                  notes: dict | None = None, ymin: float | None = None):
    """Grid of panels ``{panel title: {label: (x, y)}}``; a label has one colour in every panel, one legend.

    Args:
        fits: optional ``{panel title: {label: (x, y)}}`` drawn as dashed lines in the label's colour.
        notes: optional ``{panel title: text}`` written small in the panel's top left corner.
        ymin: lower y limit of every panel (e.g. 0 for counts); None: matplotlib's choice.

    Returns:
        the open Figure.
    """
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False, layout="constrained")
    colours = _series_colours(panels.values())
    for ax, (name, series) in zip(axes.ravel(), panels.items()):
        _draw(ax, series, xlabel, ylabel, str(name), logx, logy, hline, None, colours)
        for label, (x, y) in (fits or {}).get(name, {}).items():
            ax.plot(np.asarray(x), np.asarray(y), ls="--", lw=1.2, color=colours.get(str(label), "k"))
        if (notes or {}).get(name):
            ax.text(0.02, 0.97, notes[name], transform=ax.transAxes, va="top", ha="left", fontsize=7, color="0.3")
        if ymin is not None:
            ax.set_ylim(bottom=ymin)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    # legend at the bottom when a title takes the top
    _figure_legend(fig, axes.ravel(), "outside lower center" if title else "outside upper center")
    if title:
        fig.suptitle(wrap_label(title, 52 * ncols), fontsize=10)
    return fig


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
    """:func:`collisions_figure` written to ``path``."""
    return save_figure(collisions_figure(panels), path)


def _all_zero(y) -> bool:
    return not np.nanmax(np.abs(np.asarray(y, dtype=float)), initial=0.0) > 0


def collisions_figure(panels: dict):
    """Bead collisions vs time (ps), one panel per cut-off ``{cutoff_nm: {label: (time, count)}}`` (fig. 8a).

    Counts are drawn from 0 up. A run whose count is zero in every frame is named in its panel rather than drawn
    (its flat line would hide the others'); a cut-off at which every run is zero gets no panel, only a note in the
    title; when that is every cut-off the figure is the one line "no non-bonded bead pairs closer than <largest
    cut-off> nm in any run".

    Returns:
        the open Figure.
    """
    if not panels:
        return message_figure("no collision counts")
    empty = [c for c, ser in panels.items() if all(_all_zero(y) for _, y in ser.values())]
    labels = list(dict.fromkeys(str(k) for ser in panels.values() for k in ser))
    if len(empty) == len(panels):
        return message_figure(f"no non-bonded bead pairs closer than {max(float(c) for c in empty):g} nm in any run "
                              f"({', '.join(labels)})")
    shown = {f"r < {float(c):g} nm": ser for c, ser in panels.items() if c not in empty}
    drawn = {name: {k: v for k, v in ser.items() if not _all_zero(v[1])} for name, ser in shown.items()}
    notes = {name: "zero in every frame: " + ", ".join(str(k) for k in ser if k not in drawn[name])
             for name, ser in shown.items() if len(drawn[name]) < len(ser)}
    title = "non-bonded bead pairs closer than the cut-off, per frame (replicas averaged)"
    if empty:
        title += f"; none closer than {max(float(c) for c in empty):g} nm in any run"
    return panels_figure(drawn, "time (ps)", "colliding pairs", notes=notes, ymin=0.0, title=title)


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


class BarPanel(NamedTuple):
    """One bar chart of :func:`headline_figure`.

    Attributes:
        title: the panel's title.  ylabel: its y label (with units).
        values: ``{series: {group: (value, standard error or None)}}``: one bar per series and group (x axis:
            the groups, in order of first appearance), an error bar of +-1 SE where the SE is finite.
        bands: optional ``{group: (low, high)}`` target range drawn as a grey band behind the group's bars.
    """
    title: str
    ylabel: str
    values: dict
    bands: dict | None = None


def draw_bar_panel(ax, panel: BarPanel, colours: dict | None = None):
    """Grouped bars of ``panel`` on ``ax``: linear y axis from 0, +-1 SE error bars where given, each bar's value
    written above it, group names wrapped so that they do not overlap. ``colours``: {series: colour}.

    Returns:
        ``ax``.
    """
    colours = colours or _series_colours([panel.values])
    groups = list(dict.fromkeys(g for per in panel.values.values() for g in per))
    for i, g in enumerate(groups):
        present = [s for s in panel.values if g in panel.values[s]]
        width = 0.8 / len(present)
        for k, s in enumerate(present):
            value, se = (float("nan") if v is None else float(v) for v in panel.values[s][g])
            x = i + (k - (len(present) - 1) / 2) * width
            ax.bar(x, value, width, color=colours.get(str(s), "grey"), label=str(s))
            top = value
            if np.isfinite(se):
                ax.errorbar([x], [value], yerr=[se], fmt="none", ecolor="k", elinewidth=1, capsize=3)
                top = value + se
            if np.isfinite(value):
                ax.annotate(f"{value:.2g}", (x, top), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7)
    banded = [i for i, g in enumerate(groups) if (panel.bands or {}).get(g) is not None]
    if banded:  # drawn last, so that the legend lists it after the series
        lo, hi = (np.array([panel.bands[groups[i]][k] for i in banded], dtype=float) for k in (0, 1))
        ax.bar(banded, hi - lo, 0.9, bottom=lo, color="0.88", zorder=0, label="target range")
    ax.set_yscale("linear")
    ax.set_ylim(bottom=0.0)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax.set_xticks(np.arange(len(groups)), [wrap_label(g) for g in groups], fontsize=8)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(wrap_label(panel.title, 48), fontsize=9)
    return ax


def headline_figure(panels, title: str = ""):
    """Bar panels (:class:`BarPanel`) side by side, one colour per series across them, one legend below.

    Returns:
        the open Figure (a one-line text figure when ``panels`` is empty).
    """
    panels = list(panels)
    if not panels:
        return message_figure("nothing to compare")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.4), squeeze=False, layout="constrained")
    colours = _series_colours(p.values for p in panels)
    for ax, panel in zip(axes[0], panels):
        draw_bar_panel(ax, panel, colours)
    _figure_legend(fig, axes[0], "outside lower center")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_headline(panels, path, title: str = "") -> Path:
    """:func:`headline_figure` of ``panels`` (:class:`BarPanel`) written to ``path``, e.g. diffusivities against
    the reference with their uncertainties and the mean RDF error per run."""
    return save_figure(headline_figure(panels, title), path)


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
