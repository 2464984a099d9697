"""DKMP* ("dilated K-star message passing"): per-layer neighbourhoods whose message count grows as N x K x L.

This project's design (issue 42; no paper). Message-passing layer l (1..L) of a GNN delivers to each bead
(the receiver, ``dst``) the messages of its ``K`` nearest non-bonded neighbours whose minimum-image distance
lies in the dilated shell ``[r_{l-1}, r_l)``, plus the messages of its CG bonds (every layer). Each layer is a
star around every bead; the shells move outwards with depth, so depth buys reach while the messages per layer
stay at most N x K (+ bonds) however dense the system, where the radius graph's grow with its density
(about 12 per bead at the SPE demo's 13.5 beads/nm^3 and 0.6 nm, 97 at 1.2 nm).

How the graphs are built: one radius search at the outer radius ``r_L`` (the model's ``cutoff_nm``; the
existing :func:`openmm_mlcg.nn.neighbors.build_edges` / skin list, vesin-torch), then, per layer, plain torch
ops: shell index of every edge by ``searchsorted``, one sort by (receiver, shell, distance, sender) and the
rank within each (receiver, shell) group; ``rank < K`` is kept (:func:`select_layers`). Ties in distance go
to the lower sender index, so the selection is deterministic. The edge list itself (both directions, every
radius edge, CG bonds) is unchanged: the GNNs encode and decode every edge (the Score GNN's pair term keeps
its pairs and Newton's third law; the score terms of :mod:`openmm_mlcg.priors` read the same graph), and only
the processor's layers use the per-layer subsets (:class:`openmm_mlcg.nn.gnn.EncodeProcessDecode`).

Default shells (:func:`default_shells_nm`, used when ``model.dkmp_shells_nm`` is null): ``r_0 = 0`` and
``r_l = cutoff x (l / L)^(1/3)``, L shells of equal volume out to the cutoff, one per layer of each GNN.
Units: nm. Runtime code (not TorchScript): the layer index lists are passed to the scripted GNNs.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch

__all__ = ["NEIGHBORHOODS", "DEFAULT_DKMP_K", "LayeredEdges", "check_dkmp", "default_shells_nm", "select_layers"]

#: values of ``model.neighborhood`` (bundle metadata ``neighborhood``)
NEIGHBORHOODS = ("radius", "dkmp")
#: default K of ``model.dkmp_k``: 8, equal held-out score-matching loss to the radius graph at the paper and demo
#: sizes (K = 4 at the demo size: +1.4 % worse;
#: benchmarks/results/current/dkmp_accuracy_seeds_k8_paper.json, dkmp_accuracy_seeds*.json)
DEFAULT_DKMP_K = 8


def default_shells_nm(cutoff_nm: float, n_layers: int) -> List[float]:
    """Shell radii ``[r_0, ..., r_L]`` nm of the default rule: ``r_0 = 0``, ``r_l = cutoff (l / L)^(1/3)``.

    Equal-volume shells, so at a uniform density each holds 1/L of the radius graph's neighbours.

    Raises:
        ValueError: ``cutoff_nm`` not positive and finite, or ``n_layers`` < 1.
    """
    if not (cutoff_nm > 0 and math.isfinite(cutoff_nm)):
        raise ValueError(f"cutoff_nm: expected a positive finite radius in nm, got {cutoff_nm!r}")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers: expected an integer >= 1 (message-passing layers), got {n_layers!r}")
    return [0.0] + [float(cutoff_nm) * (l / n_layers) ** (1.0 / 3.0) for l in range(1, n_layers + 1)]


def check_dkmp(k, shells_nm: Optional[Sequence[float]], n_layers: Optional[int] = None,
               cutoff_nm: Optional[float] = None, box: Optional[torch.Tensor] = None,
               prefix: str = "model.") -> Optional[Tuple[float, ...]]:
    """Validate DKMP* settings; return the shells as a tuple of floats (None stays None: the default rule).

    Args:
        k: K, neighbours per receiver and shell (integer >= 1).
        shells_nm: ``[r_0, ..., r_L]`` nm, r_0 >= 0, strictly increasing, or None.
        n_layers: if given, L must equal it (one shell per message-passing layer).
        cutoff_nm: if given, r_L must be at most it (the radius search is at the cutoff).
        box: if given, (3, 3) nm box rows: r_L must be at most half its smallest diagonal width.
        prefix: the keys' prefix in messages (``"model."`` for the config, ``"metadata['...']"``-like otherwise).

    Raises:
        ValueError: naming ``{prefix}dkmp_k`` or ``{prefix}dkmp_shells_nm``, the expected and the actual value.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{prefix}dkmp_k: expected an integer >= 1 (neighbours per shell), got {k!r}")
    if shells_nm is None:
        return None
    key = f"{prefix}dkmp_shells_nm"
    if isinstance(shells_nm, (str, bytes)) or not isinstance(shells_nm, Sequence):
        raise ValueError(f"{key}: expected a list of L+1 increasing radii in nm, got {shells_nm!r}")
    try:
        r = tuple(float(v) for v in shells_nm)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected a list of numbers (nm), got {list(shells_nm)!r}") from None
    if len(r) < 2 or not all(math.isfinite(v) for v in r) or r[0] < 0 or any(a >= b for a, b in zip(r, r[1:])):
        raise ValueError(f"{key}: expected at least 2 finite radii >= 0 in strictly increasing order (nm), got "
                         f"{list(r)}")
    if n_layers is not None and len(r) - 1 != n_layers:
        raise ValueError(f"{key}: expected {n_layers + 1} radii (one shell per message-passing layer, L = "
                         f"{n_layers}), got {len(r)}: {list(r)}")
    if cutoff_nm is not None and r[-1] > cutoff_nm * (1 + 1e-12):
        raise ValueError(f"{key}: expected the outer radius at most {prefix}cutoff_nm = {cutoff_nm} nm (the radius "
                         f"search), got {r[-1]}")
    if box is not None:
        half = 0.5 * float(torch.diagonal(torch.as_tensor(box)).abs().min())
        if r[-1] > half:
            raise ValueError(f"{key}: expected the outer radius at most half the smallest box width ({half:.4g} nm, "
                             f"minimum image), got {r[-1]}")
    return r


def select_layers(edge_index: torch.Tensor, edge_vec: torch.Tensor, edge_type: torch.Tensor,
                  shells_nm: Sequence[float], k: int) -> List[torch.Tensor]:
    """Per-layer message sets of DKMP*: indices into the edge list, one (E_l,) long tensor per shell.

    Layer l holds every CG bond (``edge_type == 1``) and, for every receiver ``dst``, the ``k`` non-bonded
    edges of smallest distance ``|edge_vec|`` with ``shells_nm[l] <= |edge_vec| < shells_nm[l + 1]`` (ties: the
    lower ``src`` first); all of them when the shell holds fewer.

    Args:
        edge_index: (2, E) long [src, dst]. edge_vec: (E, 3) nm (minimum image). edge_type: (E,) long.
        shells_nm: L+1 increasing radii nm (validated by :func:`check_dkmp`). k: neighbours per shell (>= 1).

    Returns:
        L tensors (E_l,) long, ascending (so each keeps the edge list's order).

    Raises:
        ValueError: ``k`` < 1, fewer than 2 radii, or mismatched edge shapes.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an integer >= 1 (neighbours per shell), got {k!r}")
    if len(shells_nm) < 2:
        raise ValueError(f"shells_nm: expected at least 2 radii (nm), got {list(shells_nm)!r}")
    n_edges = edge_index.shape[1]
    if edge_vec.shape != (n_edges, 3) or edge_type.shape != (n_edges,):
        raise ValueError(f"edge_vec, edge_type: expected shapes ({n_edges}, 3) and ({n_edges},) for edge_index "
                         f"{tuple(edge_index.shape)}, got {tuple(edge_vec.shape)} and {tuple(edge_type.shape)}")
    device = edge_index.device
    n_layers = len(shells_nm) - 1
    if n_edges == 0:
        return [torch.zeros(0, dtype=torch.long, device=device) for _ in range(n_layers)]
    vec = edge_vec.detach()
    dist = torch.linalg.vector_norm(vec.to(torch.float64) if vec.dtype == torch.float16 else vec, dim=-1)
    radii = torch.tensor([float(r) for r in shells_nm], dtype=dist.dtype, device=device)
    shell = torch.searchsorted(radii, dist, right=True) - 1                       # r_s <= d < r_{s+1}
    bonded = edge_type == 1
    cand = torch.nonzero((~bonded) & (shell >= 0) & (shell < n_layers), as_tuple=True)[0]
    src, dst, sh, d = edge_index[0, cand], edge_index[1, cand], shell[cand], dist[cand]
    # lexicographic (dst, shell, d, src) by stable sorts, least significant key first
    order = torch.argsort(src, stable=True)
    order = order[torch.argsort(d[order], stable=True)]
    group = dst * n_layers + sh
    order = order[torch.argsort(group[order], stable=True)]
    g = group[order]
    pos = torch.arange(g.numel(), device=device)
    is_first = torch.ones_like(g, dtype=torch.bool)
    is_first[1:] = g[1:] != g[:-1]
    first = torch.cummax(torch.where(is_first, pos, torch.zeros_like(pos)), 0).values
    chosen = order[(pos - first) < k]                                             # indices into cand
    keep = torch.zeros(n_edges, n_layers, dtype=torch.bool, device=device)
    keep[cand[chosen], sh[chosen]] = True
    keep[bonded] = True
    return [torch.nonzero(keep[:, l], as_tuple=True)[0] for l in range(n_layers)]


class LayeredEdges(tuple):
    """The CG graph ``(edge_index, edge_vec, edge_type)`` (unpacks as the 3-tuple of ``build_edges``) with the
    DKMP* per-layer message sets of each GNN, computed on first use and cached.

    Args:
        edges: ``(edge_index (2, E), edge_vec (E, 3) nm, edge_type (E,))``.
        shells: {GNN name ("dynamics", "score"): L+1 radii nm}. k: neighbours per shell.

    ``layers(name)`` -> list of L (E_l,) long index tensors (:func:`select_layers`).
    """

    def __new__(cls, edges, shells: Dict[str, Sequence[float]], k: int):
        obj = super().__new__(cls, tuple(edges))
        obj.shells, obj.k, obj._cache = dict(shells), int(k), {}
        return obj

    def layers(self, name: str) -> List[torch.Tensor]:
        """The per-layer message sets of GNN ``name`` (KeyError: no shells for it)."""
        shells = tuple(self.shells[name])
        if shells not in self._cache:
            self._cache[shells] = select_layers(self[0], self[1], self[2], shells, self.k)
        return self._cache[shells]
