"""``openmm-mlcg coarse-grain``: validate every input first, compute the mapping and CG trajectory, write last.

Over an existing ``--out`` mapping: identical content is a no-op, different content is refused unless
``--overwrite``; a failure (e.g. a mistyped ``--trajectory``) never touches the existing mapping.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["coarse_grain_command"]


def _existing_mapping_conflict(out: Path, mapping, overwrite: bool) -> bool:
    """True if ``out`` already holds exactly ``mapping``; raise FileExistsError for another one (no --overwrite)."""
    from ..cg.mapping import CGMapping

    if not out.exists():
        return False
    try:
        old = CGMapping.load(out)
    except ValueError as exc:
        if overwrite:
            return False
        raise FileExistsError(f"--out: {out} exists but is not a readable mapping ({exc}); pass --overwrite to "
                              "replace it") from None
    if old.hash == mapping.hash:
        return True
    if not overwrite:
        raise FileExistsError(f"--out: {out} holds another mapping (group_size {old.group_size}, seed {old.seed}, "
                              f"{old.n_beads} beads, hash {old.hash[:12]}); this run gives group_size "
                              f"{mapping.group_size}, seed {mapping.seed}, {mapping.n_beads} beads (hash "
                              f"{mapping.hash[:12]}); pass --overwrite to replace it or choose another --out")
    return False


def coarse_grain_command(args) -> dict:
    """Run the subcommand for parsed ``args``; returns the JSON summary.

    Raises:
        FileNotFoundError / ValueError / FileExistsError / PermissionError / IsADirectoryError: bad input or
        output (named in the message), before anything is written.
    """
    from ..data import coarse_grain_trajectory
    from ..util.locks import output_lock
    from ..cg.mapping import CGMapping
    from ..util.outputs import check_output_dir, check_output_file
    from ..io.readers import check_input_file
    from ..cg.topology import FineGraph

    if isinstance(args.group_size, bool) or int(args.group_size) < 1:
        raise ValueError(f"--group-size: expected an integer >= 1, got {args.group_size}")
    check_input_file(args.topology, "a topology", "topology")
    for t in args.trajectory or []:
        check_input_file(t, "a trajectory", "--trajectory")
    out = check_output_file(Path(args.out), "--out")
    if args.trajectory and args.cache_dir:
        check_output_dir(args.cache_dir, "--cache-dir")
    graph = FineGraph.from_file(args.topology)
    if graph.n_atoms == 0:
        raise ValueError(f"topology: {args.topology} holds no atoms (expected a PDB with CONECT, PSF or another "
                         "mdtraj topology file)")
    mapping = CGMapping.from_graph(graph, group_size=args.group_size, seed=args.seed,
                                   bead_types=getattr(args, "bead_types", "transferable"))
    with output_lock(out.parent, "coarse-grain", "--out"):
        unchanged = _existing_mapping_conflict(out, mapping, bool(getattr(args, "overwrite", False)))
        summary = {"mapping": str(out), "n_atoms": graph.n_atoms, "n_beads": mapping.n_beads,
                   "n_molecules": graph.n_molecules, "hash": mapping.hash, "unchanged": unchanged}
        if args.trajectory:
            cg = coarse_grain_trajectory(args.trajectory, args.topology, mapping, cache_dir=args.cache_dir,
                                         frame_interval_ps=args.frame_interval_ps)
            summary.update(n_frames=cg.n_frames, frame_interval_ps=cg.frame_interval_ps,
                           cg_trajectory_cache=str(Path(args.cache_dir).resolve()) if args.cache_dir else None)
        if not unchanged:
            mapping.save(out)
    return summary
