#!/usr/bin/env python
"""Main job: learned CG MD of a PEO/LiTFSI solid polymer electrolyte vs reference MD, end to end.

    python examples/run_spe.py                  # demo scale, ~1000 atoms, <= ~20 min on 2 CPU cores
    python examples/run_spe.py --smoke          # seconds (CI)
    python examples/run_spe.py --model B.mlcg   # skip training, use an existing bundle
    python examples/run_spe.py --scale paper --platform CUDA   # ~6000 atoms, 5 ns training (GPU)

Builds the system (RDKit + packmol, GAFF2), runs reference MD with OpenMM (short training part + 5x longer
judging part), coarse-grains it with METIS, trains the Embedding/Dynamics/Score GNNs, exports one bundle,
runs ``LearnedIntegrator`` inside ``app.Simulation`` with stock reporters, then prints and saves Li+/TFSI-
diffusivity (learned vs short MD vs long reference), RDFs, collision counts and ns per wall-hour, with plots.
At demo scale (seed 0, PEO) the learned runs are also judged against a 2-ns reference of the same box shipped at
the CG level (benchmarks/data/spe_demo_long): D of Li+ and TFSI- over one lag window, PASS / FAIL / within noise.
Outputs go to ``--out`` (default examples/output/spe_demo, ``spe_smoke`` with --smoke); every stage resumes
where it stopped. ``--threads N`` sets torch's CPU threads (default min(4, CPUs)).
"""
import argparse
import sys
from pathlib import Path

from openmm_mlcg.experiments.spe import SCALES, format_summary, run_spe_experiment
from openmm_mlcg.util.threads import set_threads

#: the long reference of the demo box (benchmarks/spe_long_reference.py), shipped at the CG level
DEMO_LONG_REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "spe_demo_long"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(s for s in SCALES if s != "smoke"), default="demo")
    p.add_argument("--smoke", action="store_true", help="tiny system and model, seconds (CI)")
    p.add_argument("--model", help="existing bundle (skip training)")
    p.add_argument("--platform", choices=["CPU", "CUDA", "OpenCL", "Reference"], help="OpenMM platform for reference MD")
    p.add_argument("--device", help="torch device for the GNNs (default: cuda if available, else cpu)")
    p.add_argument("--polymer", help="polymer spec: a monomer name (PEO, PPO, ...) or a copolymer PEO/PTMO or PEO:0.7,PTMO:0.3 (default PEO)")
    p.add_argument("--no-refine", action="store_true", help="skip the Score GNN refinement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicas", type=int, help="learned runs from the common start, pooled (default: the scale's, "
                                                 "4 at demo scale)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default min(4, CPUs))")
    p.add_argument("--out", help="output directory (default examples/output/spe_demo, spe_paper or spe_smoke)")
    p.add_argument("--long-reference", help="shipped long reference of this system (judges D at long times; "
                                            "default at demo scale, seed 0, PEO: benchmarks/data/spe_demo_long)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    scale = "smoke" if args.smoke else args.scale
    out = Path(args.out or Path(__file__).parent / "output" / ("spe_smoke" if args.smoke else f"spe_{scale}"))
    long_ref = args.long_reference
    if long_ref is None and scale == "demo" and args.seed == 0 and args.polymer in (None, "PEO") \
            and (DEMO_LONG_REFERENCE / "recipe.json").is_file():
        long_ref = DEMO_LONG_REFERENCE  # the same system (build and mapping seed 0), run for 2 ns
    summary = run_spe_experiment(out, scale=scale, model=args.model, platform=args.platform, device=args.device,
                                 seed=args.seed, refine=not args.no_refine, polymer=args.polymer,
                                 replicas=args.replicas, long_reference=long_ref,
                                 progress=not args.smoke)
    print(format_summary(summary))
    print(f"summary and plots: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
