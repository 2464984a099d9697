"""A small trained LJ liquid: the refined step keeps the first g(r) peak, the independent Gaussian does not.

End to end with the real pieces: OpenMM reference MD (:mod:`openmm_mlcg.systems.lj`), the trainer, the
exported bundle and :class:`LearnedSimulator`. 108 argon atoms at 120 K, 2 ps model step (each bead moves
~0.19 nm rms per step, half the nearest-neighbour spacing). Thresholds from the measured values of this
set-up (seeded; measured 2026-12-01/02), with margin: reference first peak 2.52, unrefined 1.07, refined 2.30
(ode); the default cg_langevin also over a 25-step rollout. About 40 s on 2 CPU cores (the comparison
generators' cases are marked slow: pytest --run-slow).
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from openmm_mlcg.data import load_run
from openmm_mlcg.experiments import liquid as L
from openmm_mlcg.bundle.export import load_bundle
from openmm_mlcg.systems import lj
from openmm_mlcg.train.loop import train_on_trajectories

REFINED_MIN_PEAK = 1.8
UNREFINED_MAX_PEAK = 1.35
N_STEPS = 8


#: the OpenMM reference MD of these tests, committed (0.55 MB) so that the suite does not spend 45 s re-making it:
#: lj.generate(DIR, n_atoms=108, production_ps=400.0, frame_interval_ps=1.0, equilibration_ps=20.0, seed=3,
#: threads=1, progress_bar=False) on 2026-12-07 (metadata.json, topology.pdb, trajectory.dcd kept); the builder
#: itself is tested below and in tests/test_md_runner.py
MD_DATA = Path(__file__).parent / "data" / "lj108_seed3"


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    d = tmp_path_factory.mktemp("lj")
    mapping, cg = load_run(MD_DATA, group_size=1, cache_dir=d / "cg_cache")
    return d, mapping, cg


_TRAINED = {}


def _train(md, sampler):
    """(bundle, mapping, held-out frames, box); one training per sampler and module."""
    key = (str(md[0]), sampler)
    if key not in _TRAINED:
        _TRAINED[key] = _train_uncached(md, sampler)
    return _TRAINED[key]


def _train_uncached(md, sampler):
    torch.manual_seed(0)
    d, mapping, cg = md
    train_part = cg.slice(0, 300)
    cfg = dict(data=dict(history=2, stride=2, val_fraction=0.0, temperature_K=120.0),
               model=dict(embedding_hidden=8, embedding_layers=1, dynamics_hidden=32, dynamics_layers=2,
                          score_hidden=32, score_layers=3, cutoff_nm=0.6),
               score=dict(sampler=sampler, cg_langevin=dict(calibration_lag=5, calibration_starts=2)),
               optim=dict(lr=2e-3, lr_final=2e-4, batch_size=2),
               training=dict(n_steps=N_TRAIN, eval_every=N_TRAIN, checkpoint_every=N_TRAIN,
                             out_dir=str(d / f"model_{sampler}"), progress=False))
    bundle = load_bundle(train_on_trajectories([train_part], [mapping], cfg))
    frames = cg.positions[300::2]                           # held out, one model step apart
    box = np.asarray(cg.box[0] if np.ndim(cg.box) == 3 else cg.box, dtype=np.float64)
    return bundle, mapping, frames, box


N_TRAIN = 300
CGL_MIN_PEAK = 2.0


# measured (seeded): refined peak ode 2.30, interpolant (10 Euler-Maruyama steps) 1.67; unrefined 1.07-1.10.
# After 300 steps the interpolant has learned less than the score (on the 256-atom benchmark they are equal
# after 1200 steps), hence its lower bound.
@pytest.mark.parametrize("sampler,passes,min_peak", [
    pytest.param("ode", 20, REFINED_MIN_PEAK, marks=pytest.mark.slow),           # comparison generators: --run-slow
    pytest.param("interpolant", 11, 1.5, marks=pytest.mark.slow),
    ("cg_langevin", 16, CGL_MIN_PEAK)])
def test_refined_step_keeps_first_peak(md, sampler, passes, min_peak):
    bundle, mapping, frames, box = _train(md, sampler)
    assert bundle.metadata["sampler"] == sampler and bundle.metadata["format_version"] == 3
    starts = list(range(3, 3 + N_STEPS))
    _, g_ref = L.gr(frames[np.array(starts) + 1], box, 40)
    peaks = {}
    for label, refine in (("refined", True), ("unrefined", False)):
        out = L.one_step(bundle, mapping, frames, box, starts, dict(refine=refine, deterministic=False), seed=1)
        _, g = L.gr(out["predicted"], box, 40)
        peaks[label] = float(g.max())
        if refine:
            assert out["gnn_passes_per_step"] == passes
    assert g_ref.max() > 2.3, g_ref.max()                   # the reference is a structured liquid
    assert peaks["unrefined"] < UNREFINED_MAX_PEAK, peaks   # the independent Gaussian destroys it
    assert peaks["refined"] > min_peak, peaks               # the refinement restores most of it


def test_cg_langevin_rollout_keeps_structure_and_moves(md):
    """The default generator over a rollout: the first peak stays, no overlaps, and the beads diffuse."""
    from openmm_mlcg.model.simulator import LearnedSimulator

    bundle, mapping, frames, box = _train(md, "cg_langevin")
    sim = LearnedSimulator(bundle, mapping)
    k = int(bundle.metadata["history"])
    x, h = sim.history_from_positions(frames[:k + 1])
    out = []
    gen = torch.Generator().manual_seed(5)
    for _ in range(ROLLOUT_STEPS):
        x, h = sim.step(x, h, box, generator=gen)
        out.append(x.numpy().copy())
    out = np.asarray(out)
    _, g = L.gr(out[ROLLOUT_STEPS // 2:], box, 40)
    _, g_ref = L.gr(frames[:ROLLOUT_STEPS], box, 40)
    assert g.max() > ROLLOUT_MIN_PEAK, (g.max(), g_ref.max())
    from openmm_mlcg.analysis import nearest_neighbour_distances
    q001 = np.quantile(nearest_neighbour_distances(frames, box), 0.001)
    below = float(np.mean(nearest_neighbour_distances(out, box) < q001))
    assert below < NN_MAX_BELOW, below                                # no overlapping pairs
    msd = float(((out[-1] - frames[k]) ** 2).sum(-1).mean())
    msd_ref = float(((frames[k + ROLLOUT_STEPS] - frames[k]) ** 2).sum(-1).mean())
    assert 0.5 * msd_ref < msd < 2.0 * msd_ref, (msd, msd_ref)       # friction fitted to the data's MSD


ROLLOUT_STEPS = 25
ROLLOUT_MIN_PEAK = 2.1  # measured 2.34 (reference 2.58); MSD over 25 steps 0.60 vs 0.88 nm^2
NN_MAX_BELOW = 0.15  # measured 0.045 (the 300-step model); the independent Gaussian: ~0.9


def test_lj_builder_density_and_errors():
    top, system, pos = lj.build_lj_system(n_atoms=125, density_per_nm3=21.0)
    box = system.getDefaultPeriodicBoxVectors()
    edge = box[0][0].value_in_unit(box[0][0].unit)
    assert 125 / edge ** 3 == pytest.approx(21.0)
    assert top.getNumAtoms() == 125 and top.getNumResidues() == 125 and pos.shape == (125, 3)
    assert np.all((pos > 0) & (pos < edge))
    with pytest.raises(ValueError, match="n_atoms"):
        lj.build_lj_system(n_atoms=20)           # box edge below twice the 0.85 nm cutoff
    with pytest.raises(ValueError, match="density_per_nm3"):
        lj.build_lj_system(n_atoms=256, density_per_nm3=-1.0)
    with pytest.raises(ValueError, match="frame_interval_ps"):
        lj.generate("/nonexistent/never", frame_interval_ps=0.0013)
