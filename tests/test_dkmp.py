"""DKMP* (dilated K-star message passing, openmm_mlcg.nn.dkmp): per-layer selection against a brute-force numpy
enumeration, the GNN processor's per-layer edge sets, TorchScript, a trained bundle, and the config checks."""
import itertools

import numpy as np
import pytest
import torch

from openmm_mlcg.nn import DynamicsGNN, ScoreGNN
from openmm_mlcg.nn.dkmp import LayeredEdges, check_dkmp, default_shells_nm, select_layers
from openmm_mlcg.nn.gnn import EncodeProcessDecode
from openmm_mlcg.nn.neighbors import build_edges


def _brute_force_layers(x, box, bonds, shells, k):
    """Per layer, the set of (src, dst) of DKMP*: numpy, all pairs over the 27 nearest periodic images."""
    n = len(x)
    frac = x @ np.linalg.inv(box)
    x = (frac - np.floor(frac)) @ box                                            # wrapped into the cell
    images = np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ box      # (27, 3)
    d = x[None, :, None, :] - x[:, None, None, :] + images[None, None]           # (i, j, image, 3): x_j - x_i
    dist = np.sqrt((d ** 2).sum(-1)).min(-1)                                     # (i, j)
    bond_set = {(int(a), int(b)) for a, b in bonds.T} | {(int(b), int(a)) for a, b in bonds.T}
    layers = []
    for lo, hi in zip(shells[:-1], shells[1:]):
        chosen = set(p for p in bond_set if p[0] != p[1])
        for dst in range(n):
            cand = [(dist[src, dst], src) for src in range(n)
                    if src != dst and (src, dst) not in bond_set and lo <= dist[src, dst] < hi]
            chosen |= {(src, dst) for _, src in sorted(cand)[:k]}                 # ties: lower src first
        layers.append(chosen)
    return layers


def _as_sets(edge_index, layers):
    ei = edge_index.numpy()
    return [{(int(ei[0, i]), int(ei[1, i])) for i in idx.tolist()} for idx in layers]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_equals_brute_force_in_random_periodic_boxes(seed):
    rng = np.random.default_rng(seed)
    if seed == 2:   # triclinic OpenMM reduced box
        box = np.array([[2.6, 0.0, 0.0], [0.7, 2.5, 0.0], [-0.9, 0.8, 2.7]])
    else:
        box = np.diag(rng.uniform(2.2, 3.0, 3))
    n = 120
    x = rng.uniform(-3, 6, size=(n, 3))                       # unwrapped on purpose
    bonds = np.stack([np.arange(0, 40, 2), np.arange(1, 41, 2)])
    cutoff = 1.0
    shells = [0.0, 0.35, 0.6, 0.8, 1.0]
    edges = build_edges(torch.tensor(x), torch.tensor(box), cutoff, torch.tensor(bonds))
    for k in (1, 3):
        got = _as_sets(edges[0], select_layers(*edges, shells, k))
        assert got == _brute_force_layers(x, box, bonds, shells, k)


def test_ties_are_broken_by_sender_index():
    # a simple cubic lattice (spacing 0.25 nm in a 2 nm box): 6 neighbours at exactly 0.25 nm, 12 at 0.25 sqrt 2
    g = np.arange(8) * 0.25
    x = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    box = np.eye(3) * 2.0
    bonds = np.zeros((2, 0), dtype=np.int64)
    shells = [0.0, 0.3, 0.4]
    edges = build_edges(torch.tensor(x), torch.tensor(box), 0.4, torch.tensor(bonds))
    layers = select_layers(*edges, shells, 2)
    assert _as_sets(edges[0], layers) == _brute_force_layers(x, box, bonds, shells, 2)
    assert all(len(layer) == 2 * len(x) for layer in layers)   # exactly K per receiver despite the 6- and 12-way ties
    assert torch.equal(layers[0], select_layers(*edges, shells, 2)[0])     # deterministic


def test_k_larger_than_shell_population_gives_the_whole_shell():
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.uniform(0, 2.5, size=(80, 3)))
    box = torch.eye(3, dtype=torch.float64) * 2.5
    bonds = torch.tensor([[0, 1], [1, 2]]).t()
    edges = build_edges(x, box, 0.9, bonds)
    shells = [0.0, 0.5, 0.9]
    layers = select_layers(*edges, shells, 10_000)
    dist = edges[1].norm(dim=-1)
    for l, (lo, hi) in enumerate(zip(shells[:-1], shells[1:])):
        whole = torch.nonzero((edges[2] == 1) | ((dist >= lo) & (dist < hi)), as_tuple=True)[0]
        assert torch.equal(layers[l], whole)
    # the radius graph is the special case "every edge in every layer": bit-identical processor output
    torch.manual_seed(0)
    gnn = EncodeProcessDecode(4, 5, 16, 3, n_layers=2)
    node_x, edge_x = torch.randn(80, 4), torch.randn(edges[0].shape[1], 5)
    every = [torch.arange(edges[0].shape[1])] * 2
    assert torch.equal(gnn(node_x, edge_x, edges[0])[0], gnn(node_x, edge_x, edges[0], every)[0])


def _score_inputs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.uniform(0, 2.4, size=(n, 3)))
    box = torch.eye(3, dtype=torch.float64) * 2.4
    bonds = torch.stack([torch.arange(0, 20, 2), torch.arange(1, 21, 2)])
    edges = LayeredEdges(build_edges(x, box, 0.8, bonds), {"score": default_shells_nm(0.8, 3),
                                                           "dynamics": default_shells_nm(0.8, 3)}, 3)
    torch.manual_seed(seed)
    latent = torch.randn(n, 8)
    sigma = torch.full((n, 1), 0.05)
    zero = torch.zeros(n, 3)
    ei, ev, et = edges
    return (latent, zero, zero, ei, ev.float(), et, sigma, 0.8, 0.06), edges


def test_scripted_gnns_equal_eager_with_dkmp():
    args, edges = _score_inputs()
    score = ScoreGNN(8, 16, 3, symmetric_pairs=True).eval()
    scripted = torch.jit.script(score)
    layers = edges.layers("score")
    eager_out = score(*args, layers)
    torch.testing.assert_close(scripted(*args, layers), eager_out, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(eager_out, score(*args), atol=1e-4)         # the layers change the messages
    assert torch.allclose(eager_out.sum(0), torch.zeros(3), atol=1e-4)     # pair terms still sum to zero
    dyn = DynamicsGNN(8, history=2, hidden=16, layers=3).eval()
    n = args[0].shape[0]
    dargs = (args[0], torch.full((n,), 12.0), torch.randn(n, 2, 3), args[3], args[4], args[5], 0.8)
    out_e = dyn(*dargs, edges.layers("dynamics"))
    out_s = torch.jit.script(dyn)(*dargs, edges.layers("dynamics"))
    for a, b in zip(out_e, out_s):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bundle_trained_with_dkmp_exports_loads_and_steps(tmp_path):
    from chain_systems import chain_ion_system
    from openmm_mlcg.bundle.export import load_bundle
    from openmm_mlcg.model.simulator import LearnedSimulator
    from openmm_mlcg.train import TrainConfig, train_on_trajectories

    traj, mapping = chain_ion_system(n_frames=20)
    cfg = TrainConfig.from_dict(dict(
        data=dict(history=2, stride=1, val_fraction=0.0, temperature_K=300.0),
        model=dict(embedding_hidden=8, embedding_layers=1, dynamics_hidden=16, dynamics_layers=2, score_hidden=8,
                   score_layers=2, cutoff_nm=0.8, neighborhood="dkmp", dkmp_k=2),
        score=dict(n_levels=3, sigma_max_nm=0.05, sigma_min_nm=0.001),
        optim=dict(lr=3e-3, lr_final=1e-3, batch_size=4),
        training=dict(n_steps=3, eval_every=3, checkpoint_every=3, seed=0, out_dir=str(tmp_path / "run"),
                      progress=False)))
    path = train_on_trajectories([traj], [mapping], cfg)
    bundle = load_bundle(path)
    meta = bundle.metadata
    assert meta.neighborhood == "dkmp" and meta.dkmp_k == 2
    assert meta.dkmp_shells_nm["score"] == pytest.approx(default_shells_nm(0.8, 2))
    assert isinstance(bundle.score, torch.jit.ScriptModule)
    sim = LearnedSimulator(bundle, mapping)
    x, h = sim.history_from_positions(traj.positions[-3:])
    box = torch.as_tensor(traj.box[-1])
    assert isinstance(sim.model.edges(x, box, sim.cg_bonds), LayeredEdges)
    x1, h1 = sim.step(x, h, box, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x1).all() and not torch.equal(x1, x)
    x2, _ = sim.step(x, h, box, refine=False, deterministic=True)             # the Dynamics GNN with its layers
    assert torch.isfinite(x2).all()


def _config(**model):
    return dict(data=dict(history=2, stride=1, temperature_K=300.0),
                model={**dict(cutoff_nm=0.6, dynamics_layers=3, score_layers=3, neighborhood="dkmp"), **model})


@pytest.mark.parametrize("model, key", [
    (dict(dkmp_k=0), "model.dkmp_k"),
    (dict(dkmp_shells_nm=[0.0, 0.4, 0.3, 0.6]), "model.dkmp_shells_nm"),
    (dict(dkmp_shells_nm=[0.0, 0.2, 0.4]), "model.dkmp_shells_nm"),            # L = 2 for 3 layers
    (dict(dkmp_shells_nm=[0.0, 0.3, 0.5, 0.9]), "model.dkmp_shells_nm"),       # beyond the cutoff (the search)
    (dict(neighborhood="knn"), "model.neighborhood"),
    (dict(score_energy=True), "model.neighborhood"),
])
def test_bad_config_names_the_key(model, key):
    from openmm_mlcg.train import TrainConfig

    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TrainConfig.from_dict(_config(**model))


def test_shells_beyond_half_the_box_and_bad_metadata_are_refused():
    with pytest.raises(ValueError, match=r"dkmp_shells_nm: .*half the smallest box width"):
        check_dkmp(4, [0.0, 0.5, 1.3], box=torch.eye(3) * 2.5)
    with pytest.raises(ValueError, match=r"k: expected an integer >= 1"):
        select_layers(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
                      [0.0, 1.0], 0)
    from openmm_mlcg.model import ModelMetadata

    meta = dict(model_time_step_ps=0.5, history=2, cutoff_nm=0.5, velocity_std=0.01, acceleration_std=0.02,
                atom_type_vocabulary=["C"], sigmas_nm=[0.05, 0.001], sampler="cg_langevin", temperature_K=300.0,
                cg_langevin_sigma_nm=0.01, neighborhood="dkmp", dkmp_k=3,
                dkmp_shells_nm={"dynamics": [0.0, 0.3, 0.5], "score": [0.0, 0.5, 0.4]})
    with pytest.raises(ValueError, match=r"m\.dkmp_shells_nm: expected at least 2 finite radii.*score GNN"):
        ModelMetadata.from_dict(meta, "m")
    ok = ModelMetadata.from_dict({**meta, "dkmp_shells_nm": {"dynamics": [0.0, 0.3, 0.5], "score": [0.0, 0.5]}})
    assert ModelMetadata.from_dict(ok.to_dict()).dkmp_shells_nm == {"dynamics": (0.0, 0.3, 0.5), "score": (0.0, 0.5)}
    assert "neighborhood" not in ModelMetadata.from_dict({**meta, "neighborhood": "radius"}).to_dict()
