"""The ``openmm-mlcg`` workflow subcommands: argument parsing that calls the library, one handler each.

Subcommands: ``coarse-grain`` (METIS mapping + cached CG trajectory), ``generate spe|polymer`` (reference MD),
``train CONFIG.yaml`` (trainer), ``check BUNDLE CONFIG.yaml`` (the trained score at its training frames),
``run BUNDLE`` (a learned simulation with checkpoints and ``--resume``), ``analyze`` (observables -> JSON + PNG).
:mod:`openmm_mlcg.app.cli` adds ``campaign`` (these command lines for many systems, :mod:`.campaign`) and the
entry point. Heavy modules are imported lazily so ``openmm-mlcg --help`` is fast and the runtime never pulls in
the trainer.
"""
from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

__all__ = ["DESCRIPTION", "EPILOG", "HelpFormatter", "build_parser", "describe"]

DESCRIPTION = """\
Learned, time-integrated coarse-grained (CG) molecular dynamics inside OpenMM.

Workflow (each step is one subcommand; `openmm-mlcg SUBCOMMAND --help` lists its options):
  generate      reference all-atom MD with OpenMM (polymer electrolytes, CG polymer chains)
  coarse-grain  METIS CG mapping of a topology (+ the CG trajectory of its frames, cached)
  train         train the Embedding / Dynamics / Score GNNs from a YAML config, export one bundle (model.mlcg)
  check         how far the trained score is from the optimal one at its training frames
  run           simulate with the bundle as an OpenMM integrator (DCD/CSV reporters, checkpoints, --resume)
  analyze       observables (RDF, MSD and diffusivity, Rg, collisions, ...) -> analysis.json + PNG plots
  campaign      the steps above for many systems as Dask tasks (LocalCluster or a cluster) -> one table

Units: nm, ps, K. User errors print one line on stderr and exit with status 2 (--debug: the traceback)."""

EPILOG = ("Documentation: README.md and docs/ of the repository; the method: Fu et al., TMLR 2023, "
          "https://openreview.net/forum?id=y8RZoPjEUl")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default shown, except where there is none to show
    (None: the help text says what happens; flags: off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        none = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or none or not action.option_strings:
            return text
        return super()._get_help_string(action)


def describe(*paragraphs: str) -> str:
    """A subcommand description: paragraphs wrapped to 100 columns (the formatter keeps line breaks)."""
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 100) for p in paragraphs)


def _coarse_grain(args) -> int:
    from .cg_command import coarse_grain_command

    summary = coarse_grain_command(args)
    if summary.get("frame_interval_ps") is not None:   # float32 headers: 1.9999999258 -> 2
        summary["frame_interval_ps"] = float(f"{summary['frame_interval_ps']:.6g}")
    print(json.dumps(summary, indent=2))
    return 0


def _generate(args) -> int:
    from .generate_command import generate_command

    for d in generate_command(args):
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


def _run(args) -> int:
    from .run_command import format_run_summary, run_command

    print(format_run_summary(run_command(args, log=lambda line: print(line, flush=True))))
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
    for label, rec in (result.get("provenance", {}).get("frame_interval") or {}).items():
        first = rec[0] if isinstance(rec, list) else rec
        print(f"{label}: {first['frame_interval_ps']:.6g} ps per frame ({first['source']})")
    print(f"wrote {Path(args.out) / 'analysis.json'} ({len(result)} entries)")
    return 0


def _add_coarse_grain(sub, common) -> None:
    cg = sub.add_parser("coarse-grain", parents=[common], formatter_class=HelpFormatter,
                        help="METIS CG mapping (saved once) and optional cached CG trajectory",
                        description=describe("Partition every molecule of an all-atom topology into beads of "
                                              "about --group-size atoms (METIS) and save the mapping; with "
                                              "--trajectory, also map the frames to bead centres of mass (cached). "
                                              "Prints a JSON summary."))
    cg.add_argument("topology", help="all-atom topology: PDB with CONECT, PSF, or any mdtraj topology file")
    cg.add_argument("--group-size", type=int, default=7, help="target atoms per bead (7 for SPE, ~100 for polymers)")
    cg.add_argument("--seed", type=int, default=0, help="METIS seed")
    cg.add_argument("--bead-types", choices=["transferable", "residue", "chemistry"], default="transferable",
                    help="bead type names (CGMapping.from_graph): transferable (atom type, whole-molecule residue "
                         "name, else the bead's chemistry), residue (residue name + index) or chemistry")
    cg.add_argument("--out", default="mapping.npz", help="mapping file to write")
    cg.add_argument("--trajectory", nargs="*", metavar="FILE",
                    help="trajectory files to coarse-grain (any format mdtraj reads; default: none)")
    cg.add_argument("--frame-interval-ps", type=float, metavar="PS",
                    help="time between saved frames, ps; only for files that record none (default: from "
                         "metadata.json, the DCD header or the frame times)")
    cg.add_argument("--cache-dir", default="cg_cache", help="where the CG trajectory cache is written")
    cg.add_argument("--overwrite", action="store_true", help="replace an existing --out mapping that differs")
    cg.set_defaults(func=_coarse_grain)


def _add_generate(sub, common) -> None:
    from ..systems.packing import COPOLYMER_SYNTAX

    gen = sub.add_parser("generate", parents=[common], formatter_class=HelpFormatter,
                         help="reference MD with OpenMM: polymer electrolytes (spe) or CG polymer chains",
                         description=describe(
                             "Reference MD with OpenMM, one directory per system (topology.pdb, trajectory.dcd, "
                             "state_data.csv, metadata.json). Finished systems are skipped and interrupted ones "
                             "continue from their checkpoint.",
                             "spe: GAFF2 polymer/LiTFSI electrolytes at 353 K, frames every 2 ps. polymer: "
                             "Webb-style CG chains (implicit solvent, reduced units: tau = ps).",
                             "Example: openmm-mlcg generate spe --polymer PEO PPO PEO/PTMO --n-systems 3 --out "
                             "spe_runs"))
    gen.add_argument("kind", choices=["spe", "polymer"], help="what to simulate")
    gen.add_argument("--n-systems", type=int, default=1, help="number of systems (system i uses seed + i)")
    gen.add_argument("--length", type=int,
                     help="chain length: monomers (spe) or constitutional units (polymer) (default: the scale's)")
    gen.add_argument("--polymer", nargs="*", metavar="SPEC",
                     help=f"spe: one polymer per system, in turn; each is {COPOLYMER_SYNTAX}. Example: PEO PPO "
                          "PEO/PTMO (default: every known monomer in turn)")
    gen.add_argument("--polymer-class", choices=["class1", "class2"],
                     help="polymer: class1 regular (training) or class2 random (testing) sequences (default: class1)")
    gen.add_argument("--production-ps", type=float, metavar="PS",
                     help="production length, a positive multiple of the frame interval: ps for spe (frames every "
                          "2 ps), tau for polymer (frames every 5 tau for class1 and smoke class2, 50 tau demo class2, "
                          "500 tau paper class2) (default: the scale's; spe: 10 ps smoke, 100 ps demo, 5000 ps paper)")
    gen.add_argument("--scale", choices=["smoke", "demo", "paper"], default="demo",
                     help="system size and MD lengths: smoke (seconds: checks the pipeline, not data to learn from), "
                          "demo (~1000 atoms, minutes on a CPU) or paper (Fu et al. sizes, a GPU job)")
    gen.add_argument("--out", required=True, help="output directory (one subdirectory per system)")
    gen.add_argument("--seed", type=int, default=0, help="base seed of building and MD")
    gen.add_argument("--platform", choices=["CPU", "CUDA", "OpenCL", "Reference"],
                     help="OpenMM platform (default: the fastest available)")
    gen.add_argument("--workers", type=int, default=1,
                     help="systems simulated in parallel: Dask worker processes of a LocalCluster")
    gen.add_argument("--scheduler", metavar="ADDRESS",
                     help="run the systems on this Dask cluster instead, e.g. tcp://10.0.0.1:8786 (default: none)")
    gen.set_defaults(func=_generate)


def _add_train_check(sub, common) -> None:
    tr = sub.add_parser("train", parents=[common], formatter_class=HelpFormatter,
                        help="train Embedding/Dynamics/Score GNNs from a YAML config, export a bundle",
                        description=describe("Train from a YAML config (unknown keys rejected; relative paths "
                                              "resolve against the YAML file's folder) and export "
                                              "<training.out_dir>/model.mlcg. Resumes from <out_dir>/checkpoint.pt "
                                              "after a kill."))
    tr.add_argument("config", help="YAML config (examples/train_spe_cpu.yaml for a CPU, examples/train_spe.yaml "
                                   "for a GPU; every key: docs/configuration.md)")
    tr.set_defaults(func=_train)

    ck = sub.add_parser("check", parents=[common], formatter_class=HelpFormatter,
                        help="denoising-identity check of a trained cg_langevin bundle at its training frames",
                        description=describe("Per bead-type pair in contact: how far the trained score is from "
                                              "the optimal one at the training frames; flags pairs more than 5 "
                                              "standard errors off."))
    ck.add_argument("bundle", help="trained bundle (model.mlcg)")
    ck.add_argument("config", help="the YAML config it was trained with (its data section is used)")
    ck.add_argument("--contact-nm", type=float, metavar="NM", help="contact distance, nm (default 0.30)")
    ck.add_argument("--draws", type=int, help="noise draws per frame (default 8)")
    ck.add_argument("--out", help="also write the result as JSON to this file (default: print only)")
    ck.set_defaults(func=_check)


def _add_run(sub, common) -> None:
    from .run_command import DEFAULTS

    rn = sub.add_parser("run", parents=[common], formatter_class=HelpFormatter,
                        help="simulate with a trained bundle (LearnedIntegrator in an OpenMM Simulation)",
                        description=describe(
                            "Run a trained bundle as an OpenMM integrator (LearnedIntegrator) from CG start frames "
                            "and write cg.pdb, cg.dcd, cg.csv, a checkpoint cg.chk and run.json into --out.",
                            "Start: the last k+1 frames one model step apart of --start (a CG trajectory, or an "
                            "all-atom one mapped to beads with the mapping), or one frame (a PDB: start from rest).",
                            "--resume continues the run in --out from cg.chk up to the new total length, cutting "
                            "the DCD/CSV back to the checkpoint first (no duplicated frames)."))
    rn.add_argument("bundle", help="trained bundle (model.mlcg)")
    rn.add_argument("--mapping", metavar="NPZ",
                    help="CG mapping of the simulated system (default: the mapping bound to the bundle, if any)")
    rn.add_argument("--start", nargs="+", metavar="FILE",
                    help="start frames: a CG PDB (e.g. cg.pdb of a run), a CG or all-atom trajectory with "
                         "--topology, or an all-atom PDB (required unless --resume)")
    rn.add_argument("--topology", metavar="FILE",
                    help="topology of --start files that have none (DCD, XTC): a PDB/PSF of the same particles")
    rn.add_argument("--frame-interval-ps", type=float, metavar="PS",
                    help="ps between --start frames, only where the files record none (default: from "
                         "metadata.json, the DCD header or the frame times)")
    length = rn.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="total model steps (with --resume: including the earlier part)")
    length.add_argument("--time-ps", type=float, metavar="PS",
                        help="total simulated time, a multiple of the model step (with --resume: including the "
                             "earlier part)")
    rn.add_argument("--seed", type=int, help=f"seed of the model's random numbers (default {DEFAULTS['seed']}; "
                                             "with --resume: the run's)")
    rn.add_argument("--platform", help="OpenMM platform of the Context; the CG System has no forces, the model runs "
                                       f"on --device (default {DEFAULTS['platform']}; with --resume: the run's)")
    rn.add_argument("--device", help="torch device of the model: cpu, cuda, cuda:N (default: cuda if available)")
    rn.add_argument("--dcd-interval", type=int, metavar="STEPS",
                    help=f"model steps between DCD frames (default {DEFAULTS['dcd_interval']}; with --resume: "
                         "the run's)")
    rn.add_argument("--csv-interval", type=int, metavar="STEPS",
                    help=f"model steps between CSV rows (default {DEFAULTS['csv_interval']}; with --resume: the run's)")
    rn.add_argument("--checkpoint-interval", type=int, metavar="STEPS",
                    help=f"model steps between checkpoints, 0: only at the end (default "
                         f"{DEFAULTS['checkpoint_interval']}; with --resume: the run's)")
    rn.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    rn.add_argument("--out", default="cg_run", help="output directory")
    rn.add_argument("--no-refine", action="store_true",
                    help="skip the Score GNN generator: the Dynamics GNN's Gaussian step alone")
    rn.add_argument("--transfer", action="store_true",
                    help="run a bundle bound to another system's mapping on --mapping (same atom types)")
    rn.set_defaults(func=_run)


def _add_analyze(sub, common) -> None:
    an = sub.add_parser("analyze", parents=[common], formatter_class=HelpFormatter,
                        help="observables of one or more trajectories -> analysis.json + PNG plots",
                        description=describe("Observables of labelled trajectories (learned runs, reference "
                                              "MD), compared against --reference; writes analysis.json and PNG "
                                              "plots to --out."))
    an.add_argument("trajectories", nargs="+", help="LABEL=TRAJ[:TOPOLOGY] (e.g. learned=cg.dcd:cg.pdb); a label "
                                                    "given several times: independent replicas, pooled")
    an.add_argument("--topology", help="topology for trajectories given without one (default: none)")
    an.add_argument("--mapping", metavar="NPZ", help="CGMapping .npz: bead types and masses; all-atom trajectories "
                                                     "are mapped to beads first (default: none, element masses)")
    an.add_argument("--frame-interval-ps", type=float, metavar="PS",
                    help="ps between frames, only for runs that record none (a run's metadata.json, DCD header "
                         "or frame times win; a disagreeing value is an error; default: none)")
    an.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    an.add_argument("--bead-types", choices=["mapping", "chemistry"], default="mapping",
                    help="with --mapping: its bead types, or one type per bead chemistry (shared across residues)")
    an.add_argument("--observables", nargs="*", metavar="NAME",
                    help="subset of: rg2 rg2_acf internal_distance contact_map msd rdf collisions (default: all "
                         "that apply)")
    an.add_argument("--reference", help="label compared against (metrics r2/MAE/EMD; default: none)")
    an.add_argument("--fit-window", nargs=2, type=float, metavar=("T0", "T1"),
                    help="MSD fit window, ps (default: chosen from the data)")
    an.add_argument("--out", default="analysis", help="output directory")
    an.set_defaults(func=_analyze)


def build_parser(extra=()) -> argparse.ArgumentParser:
    """The ``openmm-mlcg`` argument parser of the workflow subcommands (one subparser each), plus ``extra``:
    functions ``add(subparsers, common_parent)`` that add more subcommands."""
    from .._version import __version__

    p = argparse.ArgumentParser(prog="openmm-mlcg", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                   help="print the package version and exit")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (training, learned runs, analysis) (default: min(4, CPUs))")
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND",
                           help="one step of the workflow above; SUBCOMMAND --help lists its options")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    _add_generate(sub, common)
    _add_coarse_grain(sub, common)
    _add_train_check(sub, common)
    _add_run(sub, common)
    _add_analyze(sub, common)
    for add in extra:
        add(sub, common)
    return p
