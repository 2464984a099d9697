"""``python -m openmm_mlcg.train CONFIG.yaml``: train from a YAML config and print the bundle path.

Data parallel: ``torchrun --nproc_per_node N -m openmm_mlcg.train CONFIG.yaml`` trains with N processes
(DistributedDataParallel, :mod:`openmm_mlcg.train.distributed`); rank 0 prints the bundle path.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), train, print the bundle path on rank 0; returns the exit code."""
    import os

    parser = argparse.ArgumentParser(prog="python -m openmm_mlcg.train",
                                     description="Train the learned CG simulator from a YAML config (one process, "
                                                 "or one per rank under torchrun) and export a bundle.")
    parser.add_argument("config", help="YAML training config (see docs/configuration.md)")
    args = parser.parse_args(argv)
    from . import train

    bundle = train(args.config)
    if os.environ.get("RANK", "0") == "0":
        print(bundle, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
