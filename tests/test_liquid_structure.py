"""A small trained LJ liquid: the refined step keeps the first g(r) peak, the independent Gaussian does not.

End to end with the real pieces: OpenMM reference MD (:mod:`openmm_mlcg.systems.lj`), the trainer, the
exported bundle and :class:`LearnedSimulator`. 108 argon atoms at 120 K, 2 ps model step (each bead moves
~0.19 nm rms per step, half the nearest-neighbour spacing). Thresholds from the measured values of this
set-up (seeded; measured 2026-12-01), with margin: reference first peak 2.52, unrefined 1.07, refined 2.30.
About 80 s on 2 CPU cores.
"""
import numpy as np
import pytest
import torch

from openmm_mlcg.data import load_run
from openmm_mlcg.experiments import liquid as L
from openmm_mlcg.export import load_bundle
from openmm_mlcg.systems import lj
from openmm_mlcg.train.loop import train_on_trajectories

REFINED_MIN_PEAK = 1.8
UNREFINED_MAX_PEAK = 1.35
N_STEPS = 8


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    d = tmp_path_factory.mktemp("lj")
    lj.generate(d / "md", n_atoms=108, production_ps=400.0, frame_interval_ps=1.0, equilibration_ps=20.0,
                seed=3, threads=1, progress_bar=False)
    mapping, cg = load_run(d / "md", group_size=1)
    return d, mapping, cg


def _train(md, sampler):
    torch.manual_seed(0)
    d, mapping, cg = md
    train_part = cg.slice(0, 300)
    cfg = dict(data=dict(history=2, stride=2, val_fraction=0.0),
               model=dict(embedding_hidden=8, embedding_layers=1, dynamics_hidden=32, dynamics_layers=2,
                          score_hidden=32, score_layers=3, cutoff_nm=0.6),
               score=dict(sampler=sampler),
               optim=dict(lr=2e-3, lr_final=2e-4, batch_size=2),
               training=dict(n_steps=N_TRAIN, eval_every=N_TRAIN, checkpoint_every=N_TRAIN,
                             out_dir=str(d / f"model_{sampler}"), progress=False))
    bundle = load_bundle(train_on_trajectories([train_part], [mapping], cfg))
    frames = cg.positions[300::2]                           # held out, one model step apart
    box = np.asarray(cg.box[0] if np.ndim(cg.box) == 3 else cg.box, dtype=np.float64)
    return bundle, mapping, frames, box


N_TRAIN = 300


# measured (seeded): refined peak ode 2.30, interpolant (10 Euler-Maruyama steps) 1.67; unrefined 1.07-1.10.
# After 300 steps the interpolant has learned less than the score (on the 256-atom benchmark they are equal
# after 1200 steps), hence its lower bound.
@pytest.mark.parametrize("sampler,passes,min_peak", [("ode", 19, REFINED_MIN_PEAK), ("interpolant", 10, 1.5)])
def test_refined_step_keeps_first_peak(md, sampler, passes, min_peak):
    bundle, mapping, frames, box = _train(md, sampler)
    assert bundle.metadata["sampler"] == sampler and bundle.metadata["format_version"] == 2
    starts = list(range(3, 3 + N_STEPS))
    _, g_ref = L.gr(frames[np.array(starts) + 1], box, 40)
    peaks = {}
    for label, refine in (("refined", True), ("unrefined", False)):
        out = L.one_step(bundle, mapping, frames, box, starts, dict(refine=refine, deterministic=False), seed=1)
        _, g = L.gr(out["predicted"], box, 40)
        peaks[label] = float(g.max())
        if refine:
            assert out["gnn_passes_per_step"] == 1 + passes
    assert g_ref.max() > 2.3, g_ref.max()                   # the reference is a structured liquid
    assert peaks["unrefined"] < UNREFINED_MAX_PEAK, peaks   # the independent Gaussian destroys it
    assert peaks["refined"] > min_peak, peaks               # the refinement restores most of it


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
