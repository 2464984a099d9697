"""Benchmark the radius neighbour-list backends of ``openmm_mlcg.nn.neighbors``: vesin-torch vs our cell list.

Random beads at the SPE bead density of ``bench_model.py`` (900 beads in a 4.05 nm box, 13.5 beads/nm^3), cutoff
0.6 nm (about 12 neighbours per bead), in a cubic and in a triclinic OpenMM reduced box of the same volume, from
1e2 to 1e5 beads. For each size and box it checks that both backends return the same pair set (and, up to
``--brute-max`` beads, the set of the O(N^2) reference ``brute_force_pairs``) and reports the median wall time of
``radius_pairs`` and of the whole ``build_edges`` (radius edges union CG bonds, minimum-image vectors).

Usage: python benchmarks/bench_neighbors.py [--sizes 100 1000 10000 100000] [--repeats 3] [--threads 1]
                                            [--device cpu] [--out benchmarks/results/current]
Writes <out>/neighbors_<device>.json (environment record of _bench_common, one row per size, box and backend).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import environment, median_time, write_json  # noqa: E402

from openmm_mlcg.nn.neighbors import BACKENDS, brute_force_pairs, build_edges, radius_pairs  # noqa: E402

DENSITY = 900 / 4.05 ** 3   # beads / nm^3, SPE-like (bench_model.py)
CUTOFF = 0.6                # nm


def make_box(n: int, kind: str) -> torch.Tensor:
    """(3, 3) reduced box of volume n / DENSITY: cubic, or triclinic with all three tilts near their limits."""
    v = n / DENSITY
    if kind == "cubic":
        return torch.eye(3, dtype=torch.float64) * v ** (1 / 3)
    shape = torch.tensor([[1.0, 0, 0], [0.4, 1.0, 0], [-0.3, 0.45, 1.0]], dtype=torch.float64)  # det = 1
    return shape * v ** (1 / 3)


def _median_time(fn, repeats: int, device: torch.device) -> float:
    return median_time(fn, repeats, device)


def _keys(pairs: torch.Tensor, n: int) -> torch.Tensor:
    return torch.unique(pairs[0] * n + pairs[1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    ap.add_argument("--boxes", nargs="+", default=["cubic", "triclinic"], choices=["cubic", "triclinic"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP / vesin threads")
    ap.add_argument("--brute-max", type=int, default=10000, help="largest size also checked against brute force")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "current"))
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rows = []
    for n in args.sizes:
        for kind in args.boxes:
            g = torch.Generator().manual_seed(n)
            box = make_box(n, kind)
            frac = torch.rand(n, 3, generator=g, dtype=torch.float64)
            x = (frac @ box).float().to(device)
            x = x + (torch.randint(-2, 3, (n, 3), generator=g).float() @ box.float()).to(device)  # unwrapped images
            boxd = box.float().to(device)
            bonds = torch.stack([torch.arange(0, n - 1, 2), torch.arange(1, n, 2)]).to(device)     # chain dimers
            ref = _keys(brute_force_pairs(x, boxd, CUTOFF), n) if n <= args.brute_max else None
            sets = {}
            for backend in BACKENDS:
                pairs = radius_pairs(x, boxd, CUTOFF, backend)
                sets[backend] = _keys(pairs, n)
                t_pairs = _median_time(lambda: radius_pairs(x, boxd, CUTOFF, backend), args.repeats, device)
                t_edges = _median_time(lambda: build_edges(x, boxd, CUTOFF, bonds, backend=backend), args.repeats,
                                       device)
                row = dict(n_beads=n, box=kind, backend=backend, n_pairs=int(sets[backend].numel()),
                           pairs_per_bead=sets[backend].numel() / n, radius_pairs_s=t_pairs, build_edges_s=t_edges,
                           equals_brute_force=None if ref is None else bool(torch.equal(sets[backend], ref)))
                rows.append(row)
                print(f"n={n:>7d} {kind:>9s} {backend:>5s}: {row['n_pairs']:>9d} pairs "
                      f"({row['pairs_per_bead']:.1f}/bead)  radius_pairs {1e3 * t_pairs:9.2f} ms  "
                      f"build_edges {1e3 * t_edges:9.2f} ms  brute force equal: {row['equals_brute_force']}",
                      flush=True)
            same = bool(torch.equal(sets["vesin"], sets["cell"]))
            for r in rows[-len(BACKENDS):]:
                r["backends_agree"] = same
            if not same:
                print(f"  MISMATCH between backends at n={n} ({kind})", flush=True)
    doc = dict(environment=environment(args.device), cutoff_nm=CUTOFF, density_per_nm3=DENSITY,
               repeats=args.repeats, threads=args.threads, rows=rows)
    path = write_json(Path(args.out) / f"neighbors_{device.type}.json", doc)
    print(f"wrote {path}")
    return doc


if __name__ == "__main__":
    main()
