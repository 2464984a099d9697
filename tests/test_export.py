"""Tests for openmm_mlcg.bundle.export (bundle round trip, version/hash checks) and openmm_mlcg.model.simulator."""
import json
import zipfile

import pytest
import torch

from openmm_mlcg.bundle.export import ExportMismatchError, check_scripted_matches_eager, load_bundle, save_bundle
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.nn import DynamicsGNN, EmbeddingGNN, ScoreGNN, build_edges
from openmm_mlcg.model.simulator import LearnedSimulator, NonFiniteStateError
from openmm_mlcg.cg.topology import FineGraph

VOCAB = ["C", "Li", "N", "O"]


def _mapping(types=("C", "C", "O", "C", "C", "N", "C", "C")):
    atoms, bonds = [], []
    for _ in range(4):
        o = len(atoms)
        atoms += list(types)
        bonds += [(o + i, o + i + 1) for i in range(len(types) - 1)]
    atoms += ["Li"] * 3
    masses = [{"C": 12.011, "O": 15.999, "N": 14.007, "Li": 6.94}.get(t, 12.0) for t in atoms]
    return CGMapping.from_graph(FineGraph.from_arrays(atoms, masses, bonds), 4, seed=0)


def _modules(seed=0):
    torch.manual_seed(seed)
    return (EmbeddingGNN(len(VOCAB), 6, hidden=16, layers=2), DynamicsGNN(16, history=3, hidden=32, layers=2),
            ScoreGNN(32, 32, 2))


META = dict(model_time_step_ps=2.0, history=3, cutoff_nm=0.6, velocity_std=0.05, acceleration_std=0.02,
            atom_type_vocabulary=VOCAB, sigmas_nm=[0.05, 0.01], langevin_steps_per_level=2,
            langevin_step_size_nm2=1e-6)


def _example_inputs(mapping, n_edges_seed=0):
    n = mapping.n_beads
    g = torch.Generator().manual_seed(n_edges_seed)
    x = torch.rand(n, 3, generator=g) * 1.5
    box = torch.eye(3) * 1.5
    ei, ev, et = build_edges(x, box, 0.6, torch.as_tensor(mapping.cg_bonds.T.copy()))
    at = torch.as_tensor(mapping.graph.type_indices(VOCAB))
    b = torch.as_tensor(mapping.graph.bonds.T.copy())
    lat = torch.randn(n, 32, generator=g)
    return {
        "embedding": (at, torch.tensor(mapping.graph.masses).float(), torch.cat([b, b.flip(0)], 1),
                      torch.zeros(2 * b.shape[1], dtype=torch.long), torch.as_tensor(mapping.atom_to_bead), n),
        "dynamics": (torch.randn(n, 16, generator=g), torch.as_tensor(mapping.bead_masses).float(),
                     torch.randn(n, 3, 3, generator=g), ei, ev, et, 0.6),
        "score": (lat, torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g), ei, ev, et, torch.full((n, 1), 0.05), 0.6, 0.05),
    }


@pytest.fixture(scope="module")
def mapping():
    return _mapping()


def test_round_trip(tmp_path, mapping):
    mods = _modules()
    path = save_bundle(tmp_path / "m.mlcg", *mods, META, mapping=mapping)
    b = load_bundle(path)
    for key in ("format_version", "package_version", "model_time_step_ps", "history", "cutoff_nm", "sigmas_nm",
                "langevin_steps_per_level", "langevin_step_size_nm2", "velocity_std", "acceleration_std",
                "atom_type_vocabulary", "n_bond_types", "min_std", "hyperparameters", "mapping_hash", "created"):
        assert key in b.metadata, key
    assert b.metadata["mapping_hash"] == mapping.hash and b.mapping.hash == mapping.hash
    assert b.metadata["hyperparameters"]["dynamics"]["history"] == 3
    diffs = check_scripted_matches_eager(mods, b, _example_inputs(mapping), atol=1e-5)
    assert set(diffs) == {"embedding", "dynamics", "score"} and max(diffs.values()) <= 1e-5
    # a different model is detected
    with pytest.raises(ExportMismatchError, match="dynamics"):
        check_scripted_matches_eager(_modules(seed=1), b, {"dynamics": _example_inputs(mapping)["dynamics"]})
    # rebuilding from stored hyperparameters gives a module of the same shape
    hp = b.metadata["hyperparameters"]
    assert sum(p.numel() for p in DynamicsGNN(**hp["dynamics"]).parameters()) == \
        sum(p.numel() for p in mods[1].parameters())


def _rewrite_metadata(src, dst, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "metadata.json":
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta).encode()
            zout.writestr(name, data)


def test_refuses_wrong_versions_and_mapping(tmp_path, mapping):
    path = save_bundle(tmp_path / "m.mlcg", *_modules(), META, mapping=None)
    bad = tmp_path / "bad.mlcg"
    _rewrite_metadata(path, bad, format_version=99)
    with pytest.raises(ValueError, match=r"format_version expected one of \(2, 3\), got 99"):
        load_bundle(bad)
    _rewrite_metadata(path, bad, package_version="7.3.0")
    with pytest.raises(ValueError, match="package_version '7.3.0'"):
        load_bundle(bad)
    _rewrite_metadata(path, bad, mapping_hash="0" * 64)
    with pytest.raises(ValueError, match="trained on another CG mapping.*transfer=True"):
        load_bundle(bad, mapping=mapping)
    assert load_bundle(path, mapping=mapping).mapping is mapping   # no hash recorded -> accepted
    with pytest.raises(ValueError, match="not an openmm_mlcg model bundle"):
        (tmp_path / "junk.mlcg").write_text("hello")
        load_bundle(tmp_path / "junk.mlcg")
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "missing.mlcg")
    with pytest.raises(ValueError, match="missing required keys"):
        save_bundle(tmp_path / "x.mlcg", *_modules(), {k: v for k, v in META.items() if k != "velocity_std"})
    assert not (tmp_path / "x.mlcg").exists()


def test_simulator_step(tmp_path, mapping):
    b = load_bundle(save_bundle(tmp_path / "m.mlcg", *_modules(), META, mapping=mapping))
    sim = LearnedSimulator(b, mapping)
    n = mapping.n_beads
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(n, 3, generator=g, dtype=torch.float64) * 1.5
    h0 = torch.randn(3, n, 3, generator=g, dtype=torch.float64) * 0.05
    box = torch.eye(3, dtype=torch.float64) * 1.5
    x1, h1 = sim.step(x0, h0, box, 2, refine=True, generator=torch.Generator().manual_seed(1))
    xa, ha = sim.step(x0, h0, box, 1, refine=True, generator=torch.Generator().manual_seed(1))
    # history holds the velocity actually applied (consistent with refined positions) and rolls
    assert torch.allclose(h1[-1], x1 - sim.step(x0, h0, box, 1, True, torch.Generator().manual_seed(1))[0])
    assert torch.allclose(ha[-1], xa - x0) and torch.equal(ha[:-1], h0[1:])
    assert x1.dtype == torch.float64 and x1.shape == (n, 3)
    # deterministic + no refinement = the update rule with the mean acceleration -v_last + residual, i.e. a
    # displacement residual * acceleration_std, minus its centre-of-mass part (periodic: momentum conserved)
    xd, hd = sim.step(x0, h0, box, 1, refine=False, generator=None, deterministic=True)
    ei, ev, et = build_edges(x0, box, 0.6, sim.cg_bonds)
    mean, _, _ = sim.dynamics(sim.bead_embedding, sim.bead_masses, (h0 / 0.05).float().permute(1, 0, 2), ei,
                              ev.float(), et, 0.6)
    v = mean.double() * 0.02
    w = (sim.bead_masses.double() / sim.bead_masses.double().sum())[:, None]
    v = v - (w * v).sum(0)
    assert torch.allclose(xd, x0 + v, atol=1e-6) and torch.allclose(hd[-1], v, atol=1e-6)
    assert torch.allclose((w * (x1 - x0)).sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # refinement changes the prediction; same generator seed reproduces it
    xr, _ = sim.step(x0, h0, box, 1, refine=True, generator=torch.Generator().manual_seed(3), deterministic=True)
    xr2, _ = sim.step(x0, h0, box, 1, refine=True, generator=torch.Generator().manual_seed(3), deterministic=True)
    assert torch.equal(xr, xr2) and not torch.allclose(xr, xd, atol=1e-7)
    with pytest.raises(ValueError, match="history"):
        sim.step(x0, h0[:2], box, 1, False, None)


def test_simulator_errors(tmp_path, mapping):
    b = load_bundle(save_bundle(tmp_path / "m.mlcg", *_modules(), META))
    with pytest.raises(ValueError, match=r"atom types \['S'\]"):
        LearnedSimulator(b, _mapping(types=("C", "S", "C")))
    sim = LearnedSimulator(b, mapping)

    class Exploding(torch.nn.Module):
        def __init__(self, inner, bad_from):
            super().__init__()
            self.inner, self.calls, self.bad_from = inner, 0, bad_from

        def forward(self, *args):
            mean, std, lat = self.inner(*args)
            self.calls += 1
            if self.calls > self.bad_from:
                mean = mean * float("nan")
            return mean, std, lat

    n = mapping.n_beads
    x0 = torch.rand(n, 3, dtype=torch.float64)
    h0 = torch.zeros(3, n, 3, dtype=torch.float64)
    x2, h2 = sim.step(x0, h0, None, 2, refine=False, generator=None, deterministic=True)
    sim.model.dynamics = Exploding(sim.model.dynamics, bad_from=2)
    with pytest.raises(NonFiniteStateError, match="step 2 ") as err:
        sim.step(x0, h0, None, 4, refine=False, generator=None, deterministic=True)
    # the error carries the last finite state: the state after the two good steps
    assert err.value.step == 2
    assert torch.equal(err.value.positions, x2) and torch.equal(err.value.history, h2)


def test_torch_export_bundle(tmp_path, mapping):
    mods = (EmbeddingGNN(len(VOCAB), 6, hidden=8, layers=1), DynamicsGNN(8, history=3, hidden=8, layers=1),
            ScoreGNN(8, 8, 1))
    path = save_bundle(tmp_path / "e.mlcg", *mods, META, export_format="torch.export")
    b = load_bundle(path)
    assert b.metadata["export_format"] == "torch.export"
    ex = _example_inputs(mapping)
    ex["dynamics"] = (torch.randn(mapping.n_beads, 8),) + ex["dynamics"][1:]
    ex["score"] = (torch.randn(mapping.n_beads, 8),) + ex["score"][1:]
    check_scripted_matches_eager(mods, b, ex, atol=1e-5)   # dynamic bead/edge counts differ from the trace
    with pytest.raises(ValueError, match="scalar"):
        b.dynamics(*ex["dynamics"][:-1], 0.7)
