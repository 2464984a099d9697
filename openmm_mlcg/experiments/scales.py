"""Scale presets of the paper-protocol experiments and their benchmarks, as plain data in one place.

Each table maps a scale name ("smoke": seconds, CI; "demo": minutes on a 2-core CPU; "paper": Fu et al., TMLR
2023 appendix B sizes, a GPU job; bench_liquid has "smoke" / "full") to a dict of settings.  The experiments
(:mod:`.polymer`, :mod:`.spe`) and the benchmarks (``benchmarks/bench_accuracy.py``, ``bench_liquid.py``) import
them from here; ``experiments.polymer.SCALES`` and ``experiments.spe.SCALES`` are these same objects.

Units: polymer times in tau (= ps in the reduced units sigma = 1 nm, tau = 1 ps, m = 1 amu), polymer lengths in
constitutional units (~2.2 beads each); SPE times in ps, cutoffs in nm.  Nothing here imports OpenMM or torch.
"""
from __future__ import annotations

__all__ = ["POLYMER", "SPE", "ACCURACY_BENCH", "LIQUID_BENCH", "preset"]

# --- single-chain polymers (experiments.polymer, section 4.1) -------------------------------------------------
_POLYMER_COMMON = dict(frame_tau=5.0, stride=1, mapping_seed=0, lr=1e-3, lr_final=1e-4, val_fraction=0.1,
                       score_levels=10, score_steps_per_level=5)
#: sizes per scale; times in tau (= ps), lengths in constitutional units (~2.2 beads each)
POLYMER = {
    "smoke": dict(_POLYMER_COMMON, length=8, n_train=2, n_test=2, train_tau=60.0, test_tau=100.0, equil_tau=10.0,
                  test_frame_tau=5.0, group_size=4, history=3, hidden=16, layers=1, train_steps=60,
                  batch_size=2, cutoff_nm=2.5),
    "demo": dict(_POLYMER_COMMON, length=24, n_train=4, n_test=4, train_tau=800.0, test_tau=2500.0, equil_tau=100.0,
                 test_frame_tau=5.0, group_size=5, history=5, hidden=48, layers=3, train_steps=3000,
                 batch_size=8, cutoff_nm=3.0),
    "paper": dict(_POLYMER_COMMON, length=400, n_train=100, n_test=40, train_tau=50000.0, test_tau=5.0e6,
                  equil_tau=5000.0, test_frame_tau=500.0, group_size=100, history=29, hidden=128, layers=7,
                  train_steps=2_000_000, batch_size=4, cutoff_nm=5.0, lr=2e-4, lr_final=2e-5),
}

# --- solid polymer electrolyte (experiments.spe, section 4.2) -------------------------------------------------
_TINY = dict(embedding_hidden=16, embedding_layers=2, dynamics_hidden=32, dynamics_layers=2, score_hidden=32,
             score_layers=2, cutoff_nm=0.5)
_SMALL = dict(embedding_hidden=32, embedding_layers=3, dynamics_hidden=64, dynamics_layers=4, score_hidden=64,
              score_layers=3)
_REFINE_LIGHT = dict(n_levels=10)   # levels of the score / interpolant samplers (the default cg_langevin ignores it)
#: demo SPE: the trainer's defaults (issue 38 item 1: the presets carry sizes only).  Until 2026-12-07 the demo set
#: two knobs chosen by ablations on the judged boxes: an inertial mass floor of 150 amu (smoothing sigma 0.012 nm
#: instead of 0.023 at the median bead mass) and a Li+ pair correction fitted after training.  Measured on the
#: same box, data (40 ps) and seed with the committed 2-ns reference (``bench_electrolyte.py``, current/
#: electrolyte.json vs archive/electrolyte_preset_score.json): RDF error 0.157 with the knobs, 0.171 without (short
#: MD 0.180: both pass), Li+ D 7.0x vs 5.1x and TFSI- D 4.2x vs 2.8x the reference's: the knobs traded the
#: diffusivities for 8 % of RDF error, so they go; a new electrolyte gets the same settings as this one.
_SPE_DEMO_SCORE = dict(_REFINE_LIGHT)

#: per scale: system (``systems.spe.build_spe`` kwargs), MD lengths (ps), model step = stride x frame interval,
#: history k, model sizes, training steps, refinement schedule, wall seconds for each side of the side-by-side
#: speed measurement, validation fraction (the smoke and demo training
#: parts, 21 and 41 frames, are too short to hold out a validation window: the judging part is never used for it),
#: and ``learned_replicas``: learned runs from the common start with seeds seed, seed + 1, ..., whose observables
#: are pooled (``analysis.replicas``).  One 200-ps learned run's RDF error carries its own sampling noise: on the
#: 4-box demo ensemble (docs/history.md, ``benchmarks/spe_replicas.py``) 1, 2, 4, 8 replicas gave a paired RDF
#: error of +0.012, -0.002, -0.009, -0.013 against short MD, while one run of 800 ps gave +0.018 (a long run
#: forgets the start state, which the judging window remembers).
SPE = {
    "smoke": dict(build=dict(polymer="PEO", n_chains=4, chain_length=6, n_salt=2, nonbonded_cutoff=0.6),
                  equilibration_ps=1.0,
                  training_ps=2.0, judge_factor=5, frame_interval_ps=0.1, stride=2, history=3, model=_TINY,
                  train_steps=10, batch_size=2, score=dict(_REFINE_LIGHT, n_levels=2),
                  val_fraction=0.0, speed_s=1.0, learned_replicas=2),
    "demo": dict(build=dict(polymer="PEO", n_chains=9, chain_length=12), equilibration_ps=40.0,
                 training_ps=40.0, judge_factor=5, frame_interval_ps=1.0, stride=2, history=4, model=_SMALL,
                 train_steps=1600, batch_size=4, score=_SPE_DEMO_SCORE, val_fraction=0.0, speed_s=10.0,
                 learned_replicas=4),
    # Fu et al. 2023 app. B/C: ~6000 atoms, 5 ns training, 0.2 ns model step, k = 20, full-size GNNs (GPU job)
    "paper": dict(build=dict(polymer="PEO", n_chains=10, chain_length=50, n_salt=50), equilibration_ps=5000.0,
                  training_ps=5000.0, judge_factor=5, frame_interval_ps=2.0, stride=100, history=20, model={},
                  train_steps=200000, batch_size=4, score={}, val_fraction=0.1, speed_s=30.0,
                  learned_replicas=4),
}

# --- benchmarks/bench_accuracy.py ------------------------------------------------------------------------------
#: per scale: ``polymer`` = settings of ``experiments.polymer`` (``polymer_settings`` keys) overriding
#: ``POLYMER[scale]``; ``spe`` = the SPE benchmark's reference run and data settings (None: no SPE at that scale,
#: the smallest box that fits the 0.9 nm PME cutoff costs minutes of MD); ``model`` = model size and training
#: shared by both parts (hidden width, layers, optimisation steps, batch size, Score levels / steps per level).
ACCURACY_BENCH = {
    "smoke": dict(
        polymer=dict(length=12, n_train=2, n_test=2, train_tau=150.0, test_tau=250.0, frame_tau=5.0,
                     test_frame_tau=5.0, equil_tau=20.0, group_size=5, history=3, stride=1),
        spe=None,
        model=dict(hidden=16, layers=1, train_steps=10, batch_size=2, n_levels=2, steps_per_level=1)),
    "demo": dict(
        polymer=dict(length=30, n_train=3, n_test=6, train_tau=1000.0, test_tau=2500.0, frame_tau=5.0,
                     test_frame_tau=5.0, equil_tau=100.0, group_size=7, history=5, stride=1),
        spe=dict(equil_ps=20.0, total_ps=120.0, train_ps=40.0, frame_ps=1.0, group_size=7, history=3, stride=2),
        model=dict(hidden=32, layers=2, train_steps=2000, batch_size=4, n_levels=10, steps_per_level=2)),
    "paper": dict(
        polymer=dict(length=400, n_train=20, n_test=20, train_tau=50000.0, test_tau=500000.0, frame_tau=5.0,
                     test_frame_tau=5.0, equil_tau=5000.0, group_size=100, history=29, stride=1),
        spe=dict(equil_ps=5000.0, total_ps=50000.0, train_ps=5000.0, frame_ps=2.0, group_size=7, history=20,
                 stride=100),
        model=dict(hidden=128, layers=7, train_steps=100000, batch_size=4, n_levels=20, steps_per_level=10)),
}

# --- benchmarks/bench_liquid.py --------------------------------------------------------------------------------
#: LJ liquid (argon-like): atoms, training / reference MD ps, training steps, rollout / short-rollout model steps,
#: one-step test samples, model sizes, MSD fit window (ps)
LIQUID_BENCH = {
    "smoke": dict(n_atoms=108, train_ps=60.0, ref_ps=60.0, train_steps=20, rollout=20, short=10, one_step=3,
                  model=dict(embedding_hidden=8, embedding_layers=1, dynamics_hidden=16, dynamics_layers=1,
                             score_hidden=16, score_layers=1), fit=(4.0, 16.0)),
    # the scorecard's --quick: the full liquid and model, 1 ns of MD each (LJ MD is regenerated, ~2 min per ns on
    # 2 cores), 400 training steps, a 1-ns rollout
    "quick": dict(n_atoms=256, train_ps=1000.0, ref_ps=1000.0, train_steps=400, rollout=500, short=100, one_step=5,
                  model=dict(embedding_hidden=16, embedding_layers=1, dynamics_hidden=64, dynamics_layers=3,
                             score_hidden=64, score_layers=4), fit=(10.0, 100.0)),
    "full": dict(n_atoms=256, train_ps=4000.0, ref_ps=4000.0, train_steps=1200, rollout=10000, short=500,
                 one_step=10, model=dict(embedding_hidden=16, embedding_layers=1, dynamics_hidden=64,
                                         dynamics_layers=3, score_hidden=64, score_layers=4), fit=(10.0, 100.0)),
}

_TABLES = {"polymer": POLYMER, "spe": SPE, "accuracy_bench": ACCURACY_BENCH, "liquid_bench": LIQUID_BENCH}


def preset(experiment: str, scale: str) -> dict:
    """The preset of ``experiment`` ("polymer", "spe", "accuracy_bench", "liquid_bench") at ``scale``.

    Returns:
        the table's dict itself (not a copy: copy it before changing it).

    Raises:
        ValueError: unknown ``experiment`` or ``scale`` (the message lists the known names).
    """
    if experiment not in _TABLES:
        raise ValueError(f"experiment: expected one of {sorted(_TABLES)}, got {experiment!r}")
    table = _TABLES[experiment]
    if scale not in table:
        raise ValueError(f"scale: expected one of {sorted(table)} for {experiment!r}, got {scale!r}")
    return table[scale]
