"""``openmm-mlcg`` command line: the entry point, the workflow subcommands (:mod:`.commands`) and ``campaign``.

``campaign CAMPAIGN.yaml`` runs the workflow's command lines for many systems as Dask tasks (:mod:`.campaign`);
it lives here, above :mod:`.commands`, because a campaign parses its command lines with that parser.
"""
from __future__ import annotations

import argparse
import sys

from .commands import DESCRIPTION, EPILOG, describe, HelpFormatter
from .commands import build_parser as _workflow_parser

__all__ = ["DESCRIPTION", "EPILOG", "build_parser", "main"]


def _campaign(args) -> int:
    from .campaign import load_campaign, run_campaign

    spec = load_campaign(args.campaign_file)
    rows = run_campaign(spec["systems"], spec["out"], spec["base_dir"], n_workers=args.workers,
                        scheduler=args.scheduler, retries=args.retries)
    for r in rows:
        print(f"{r['system']}: {r['status']} ({r['done']}/{r['commands']} commands) {r['error'] or r['output']}")
    print(f"wrote {spec['out'] / 'campaign.csv'} ({len(rows)} systems)")
    return 0 if all(r["status"] == "done" for r in rows) else 1


def _add_campaign(sub, common) -> None:
    cp = sub.add_parser("campaign", parents=[common], formatter_class=HelpFormatter,
                        help="the workflow of many systems as Dask tasks -> one results table",
                        description=describe(
                            "Run each system's openmm-mlcg command lines (generate, coarse-grain, run, analyze) in "
                            "order, systems in parallel as Dask tasks, and write OUT/campaign.csv and "
                            "OUT/campaign.json. Rerunning skips finished commands and resumes interrupted ones.",
                            "CAMPAIGN.yaml: `out: FOLDER` and `systems: {NAME: [command line, ...]}`; relative "
                            "paths resolve against its folder (docs/scaling.md)."))
    cp.add_argument("campaign_file", metavar="CAMPAIGN.yaml", help="the campaign file")
    cp.add_argument("--workers", type=int,
                    help="LocalCluster worker processes; 1: in this process, one system after another "
                         "(default: one per CPU)")
    cp.add_argument("--scheduler", metavar="ADDRESS",
                    help="a running Dask cluster's scheduler, e.g. tcp://10.0.0.1:8786 (default: a LocalCluster)")
    cp.add_argument("--retries", type=int, help="reruns of a task that raised an unexpected error (default 2)")
    cp.set_defaults(func=_campaign)


def build_parser() -> argparse.ArgumentParser:
    """The ``openmm-mlcg`` argument parser (one subparser per subcommand, ``campaign`` included)."""
    return _workflow_parser(extra=[_add_campaign])


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
