"""``openmm-mlcg`` command line: thin argument parsing that calls the library.

Subcommands: ``coarse-grain`` (METIS mapping + cached CG trajectory), ``generate spe|polymer`` (reference MD),
``train CONFIG.yaml`` (trainer), ``check BUNDLE CONFIG.yaml`` (the trained score at its training frames),
``analyze`` (observables -> JSON + PNG). Heavy modules are imported lazily so
``openmm-mlcg --help`` is fast and the runtime never pulls in the trainer.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _coarse_grain(args) -> int:
    from .cg_command import coarse_grain_command

    print(json.dumps(coarse_grain_command(args), indent=2))
    return 0


def _generate(args) -> int:
    common = dict(n_systems=args.n_systems, out_dir=args.out, seed=args.seed, platform=args.platform,
                  scale=args.scale, n_workers=args.workers)
    if args.kind == "spe":
        from ..systems.spe import generate
        kwargs = dict(polymers=args.polymer, chain_length=args.length, training_ps=args.production_ps)
    else:
        from ..systems.polymer import generate
        kwargs = dict(kind=args.polymer_class, length=args.length, production_tau=args.production_ps)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    dirs = generate(**common, **kwargs)
    for d in dirs or []:
        print(d)
    return 0


def _train(args) -> int:
    from ..train import train

    print(train(args.config))
    return 0


def _check(args) -> int:
    from ..train.check import check_bundle, format_report

    given = {k: v for k, v in (("contact_nm", args.contact_nm), ("draws", args.draws)) if v is not None}
    result = check_bundle(args.bundle, args.config, out=args.out, **given)
    print(format_report(result))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _analyze(args) -> int:
    from ..analysis import analyze_files

    trajectories = {}
    for item in args.trajectories:
        label, sep, spec = item.partition("=")
        if not sep:
            raise ValueError(f"trajectories: expected LABEL=TRAJ[:TOPOLOGY], got {item!r}")
        traj, _, top = spec.partition(":")
        entry = (traj, top) if top else traj
        if label in trajectories:   # a label given again: independent replicas, pooled
            previous = trajectories[label]
            trajectories[label] = {"replicas": (previous["replicas"] if isinstance(previous, dict) else [previous])
                                   + [entry]}
        else:
            trajectories[label] = entry
    kwargs = {}
    if args.fit_window:
        kwargs["fit_window_ps"] = tuple(args.fit_window)
    result = analyze_files(trajectories, args.out, topology=args.topology, mapping=args.mapping,
                           frame_interval_ps=args.frame_interval_ps, stride=args.stride,
                           observables=args.observables, reference=args.reference, bead_types=args.bead_types,
                           **kwargs)
    print(f"wrote {Path(args.out) / 'analysis.json'} ({len(result)} entries)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``openmm-mlcg`` argument parser (one subparser per subcommand)."""
    p = argparse.ArgumentParser(prog="openmm-mlcg", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (training, learned runs, analysis); default min(4, CPUs)")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")

    cg = sub.add_parser("coarse-grain", parents=[common],
                        help="METIS CG mapping (saved once) and optional cached CG trajectory")
    cg.add_argument("topology", help="all-atom topology: PDB with CONECT, PSF, or any mdtraj topology file")
    cg.add_argument("--group-size", type=int, default=7, help="target atoms per bead (default 7)")
    cg.add_argument("--seed", type=int, default=0)
    cg.add_argument("--bead-types", choices=["transferable", "residue", "chemistry"], default="transferable",
                    help="bead type names (CGMapping.from_graph): transferable (default: atom type, whole-molecule "
                         "residue name, else the bead's chemistry), residue (residue name + index) or chemistry")
    cg.add_argument("--out", default="mapping.npz", help="mapping file to write")
    cg.add_argument("--trajectory", nargs="*", help="trajectory files (any format mdtraj reads)")
    cg.add_argument("--frame-interval-ps", type=float, help="time between saved frames, ps (only where the files record none)")
    cg.add_argument("--cache-dir", default="cg_cache", help="where the CG trajectory cache is written")
    cg.add_argument("--overwrite", action="store_true", help="replace an existing --out mapping that differs")
    cg.set_defaults(func=_coarse_grain)

    gen = sub.add_parser("generate", parents=[common],
                        help="reference MD with OpenMM: polymer electrolytes or CG polymers")
    gen.add_argument("kind", choices=["spe", "polymer"])
    gen.add_argument("--n-systems", type=int, default=1)
    gen.add_argument("--length", type=int, help="chain length (monomers for spe, constitutional units for polymer)")
    gen.add_argument("--polymer", nargs="*", help="spe: monomer names or copolymer specs, e.g. PEO PPO PEO:PTMO")
    gen.add_argument("--polymer-class", choices=["class1", "class2"], default="class1",
                     help="polymer: class-I regular (training) or class-II random (testing) sequences")
    gen.add_argument("--production-ps", type=float, help="production length, ps (tau for polymers)")
    gen.add_argument("--scale", choices=["demo", "paper"], default="demo")
    gen.add_argument("--out", required=True, help="output directory (one subdirectory per system)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--platform", choices=["CPU", "CUDA", "OpenCL", "Reference"], default=None)
    gen.add_argument("--workers", type=int, default=1, help="systems simulated in parallel")
    gen.set_defaults(func=_generate)

    tr = sub.add_parser("train", parents=[common],
                        help="train Embedding/Dynamics/Score GNNs from a YAML config, export a bundle")
    tr.add_argument("config", help="YAML config (see examples/train_spe.yaml)")
    tr.set_defaults(func=_train)

    ck = sub.add_parser("check", parents=[common],
                        help="denoising-identity check of a trained cg_langevin bundle at its training frames")
    ck.add_argument("bundle", help="trained bundle (model.mlcg)")
    ck.add_argument("config", help="the YAML config it was trained with (its data section is used)")
    ck.add_argument("--contact-nm", type=float, help="contact distance, nm (default 0.30)")
    ck.add_argument("--draws", type=int, help="noise draws per frame (default 8)")
    ck.add_argument("--out", help="also write the result as JSON")
    ck.set_defaults(func=_check)

    an = sub.add_parser("analyze", parents=[common],
                        help="observables of one or more trajectories -> analysis.json + PNG plots")
    an.add_argument("trajectories", nargs="+", help="LABEL=TRAJ[:TOPOLOGY] (e.g. learned=cg.dcd:cg.pdb); a label "
                                                    "given several times: independent replicas, pooled")
    an.add_argument("--topology", help="topology for trajectories given without one")
    an.add_argument("--mapping", help="CGMapping .npz: map all-atom trajectories to beads first")
    an.add_argument("--frame-interval-ps", type=float,
                    help="ps between frames, only for runs that record none (a run's metadata.json, DCD header "
                         "or frame times win; a disagreeing value is an error)")
    an.add_argument("--stride", type=int, default=1)
    an.add_argument("--bead-types", choices=["mapping", "chemistry"], default="mapping",
                    help="with --mapping: its bead types, or one type per bead chemistry (shared across residues)")
    an.add_argument("--observables", nargs="*", help="subset of: rg2 rg2_acf internal_distance contact_map msd rdf collisions")
    an.add_argument("--reference", help="label compared against (metrics r2/MAE/EMD)")
    an.add_argument("--fit-window", nargs=2, type=float, metavar=("T0", "T1"), help="MSD fit window, ps")
    an.add_argument("--out", default="analysis", help="output directory")
    an.set_defaults(func=_analyze)
    return p


def main(argv=None) -> int:
    """Entry point of the ``openmm-mlcg`` console script; returns the exit status.

    User errors (bad values or config, missing/unwritable/corrupt files, a busy output directory) are printed
    as one line on stderr with exit status 2; ``--debug`` shows the traceback instead.
    """
    from .cli_errors import run_guarded

    args = build_parser().parse_args(argv)
    from ..util.threads import set_threads

    def run(a):
        """Set the torch threads, then run the subcommand (both inside the user-error guard)."""
        set_threads(a.threads)
        return a.func(a)

    return run_guarded(run, args, args.command, debug=getattr(args, "debug", False))


if __name__ == "__main__":
    sys.exit(main())
