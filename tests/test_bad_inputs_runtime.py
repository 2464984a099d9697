"""Bad inputs at run time (resume, checkpoints, text/binary mix-ups, empty DCDs, truncated bundles, Angstrom
positions, export determinism): each case asserts the exception type, that the message names the argument or
the file, and that no file was changed (sha256 before and after)."""
import hashlib
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from conftest import linear_chain_graph
from openmm import app, unit
from test_bad_inputs import META, _cli, _modules, _walk

from openmm_mlcg.bundle.export import load_bundle, save_bundle
from openmm_mlcg.cg.mapping import CGMapping
from openmm_mlcg.openmm import (
    LearnedIntegrator,
    create_cg_system,
    create_simulation,
    resume_simulation,
)

torch.set_num_threads(1)
N_STEPS, CHECKPOINT_STEP = 6, 4


def _sha(*paths) -> list:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A reported LearnedIntegrator run of a 4-bead chain: bundle, CG topology PDB, cg.dcd / cg.csv of
    N_STEPS steps (one frame per step) and a checkpoint at CHECKPOINT_STEP."""
    d = tmp_path_factory.mktemp("run")
    mapping = CGMapping.from_graph(linear_chain_graph(12), 3)
    bundle = save_bundle(d / "model.mlcg", *_modules(), META, mapping=mapping)
    frames = _walk(mapping.n_beads, 3, 0.01)
    top, system = create_cg_system(mapping, None)
    with open(d / "cg.pdb", "w") as fh:
        app.PDBFile.writeFile(top, frames[-1] * 10.0, fh)

    def simulation():
        sim = create_simulation(top, system, LearnedIntegrator(bundle, history=frames, device="cpu", seed=3),
                                openmm.Platform.getPlatformByName("Reference"))
        sim.context.setPositions(frames[-1])
        return sim

    sim = simulation()
    sim.reporters.append(app.DCDReporter(str(d / "cg.dcd"), 1, enforcePeriodicBox=False))
    sim.reporters.append(app.StateDataReporter(str(d / "cg.csv"), 1, step=True, time=True))
    sim.step(CHECKPOINT_STEP)
    sim.saveCheckpoint(str(d / "cg.chk"))
    sim.step(N_STEPS - CHECKPOINT_STEP)
    for r in sim.reporters:
        r._out.close()
    return {"dir": d, "bundle": bundle, "mapping": mapping, "simulation": simulation, "frames": frames,
            "topology": top, "system": system}


@pytest.fixture()
def outputs(run, tmp_path):
    """Fresh copies of the run's checkpoint, DCD and CSV."""
    for name in ("cg.chk", "cg.dcd", "cg.csv"):
        (tmp_path / name).write_bytes((run["dir"] / name).read_bytes())
    return tmp_path / "cg.chk", tmp_path / "cg.dcd", tmp_path / "cg.csv"


def _write_dcd(path, n_atoms, n_frames, first_step=1, interval=1, dt_ps=1.0):
    """A DCD as DCDReporter writes it (random positions)."""
    top = app.Topology()
    res = top.addResidue("X", top.addChain())
    for _ in range(n_atoms):
        top.addAtom("C", app.element.carbon, res)
    xyz = np.random.default_rng(0).uniform(0, 3, (n_atoms, 3))
    with open(path, "wb") as fh:
        dcd = app.DCDFile(fh, top, dt_ps * unit.picosecond, first_step, interval)
        for _ in range(n_frames):
            dcd.writeModel(xyz * unit.nanometer)
    return path


# ------------------------------------------------------------------------------------------- 1: resume outputs
def test_resume_accepts_its_own_outputs(run, outputs):
    chk, dcd, csv = outputs
    sim = run["simulation"]()
    assert resume_simulation(sim, chk, dcd=[dcd], csv=[csv]) == CHECKPOINT_STEP
    from openmm_mlcg.io.dcd import dcd_frame_count
    assert dcd_frame_count(dcd) == CHECKPOINT_STEP and len(csv.read_text().splitlines()) == 1 + CHECKPOINT_STEP


DCD_CASES = {  # name: (DCD writer arguments, expected message)
    "other_system": ({"n_atoms": 65, "n_frames": 40}, r"dcd: .*bad\.dcd holds 65 particles per frame, expected 4"),
    "other_time_step": ({"n_atoms": 4, "n_frames": 6, "dt_ps": 0.002},
                        r"dcd: .*bad\.dcd .*time step of 0\.002 ps, expected 1 ps"),
    "starts_after": ({"n_atoms": 4, "n_frames": 6, "first_step": 50},
                     r"dcd: .*bad\.dcd starts at step 50.*checkpoint's step 4"),
    "frames_missing": ({"n_atoms": 4, "n_frames": 2}, r"dcd: .*bad\.dcd holds 2 frames .*checkpoint is at step 4"),
}


@pytest.mark.parametrize("case", sorted(DCD_CASES))
def test_resume_checks_every_dcd_before_cutting_any_file(run, outputs, case):
    chk, dcd, csv = outputs
    kwargs, match = DCD_CASES[case]
    bad = _write_dcd(chk.parent / "bad.dcd", **kwargs)
    files = [chk, dcd, csv, bad]
    before = _sha(*files)
    sim = run["simulation"]()
    with pytest.raises(ValueError, match=match):
        resume_simulation(sim, chk, dcd=[dcd, bad], csv=[csv])  # the good DCD listed first is not cut either
    assert _sha(*files) == before
    assert sim.context.getStepCount() == 0  # the Context as it was before the call


@pytest.mark.parametrize("given", ["dcd", "bundle"])
def test_resume_binary_file_as_csv(run, outputs, given):
    chk, dcd, csv = outputs
    binary = dcd if given == "dcd" else run["bundle"]
    files = [chk, dcd, csv, binary]
    before = _sha(*files)
    what = "a DCD trajectory" if given == "dcd" else "an openmm_mlcg model bundle"
    with pytest.raises(ValueError, match=rf"csv: .*{binary.name} is {what}.*expected a StateDataReporter CSV"):
        resume_simulation(run["simulation"](), chk, dcd=[dcd], csv=[binary])
    assert _sha(*files) == before


def test_resume_csv_rows_missing_before_checkpoint(run, outputs):
    chk, dcd, csv = outputs
    csv.write_text('#"Step","Time (ps)"\n1,1.0\n2,2.0\n')
    before = _sha(chk, dcd, csv)
    with pytest.raises(ValueError, match=r"csv: .*cg\.csv ends at step 2 .*checkpoint is at step 4"):
        resume_simulation(run["simulation"](), chk, dcd=[dcd], csv=[csv])
    assert _sha(chk, dcd, csv) == before


# ------------------------------------------------------------------------------------------- 2: checkpoints
@pytest.mark.parametrize("cut", [0.25, 0.5, 0.9, -8, -1])
def test_resume_truncated_checkpoint(run, outputs, cut):
    chk, dcd, csv = outputs
    data = chk.read_bytes()
    chk.write_bytes(data[: int(len(data) * cut) if cut > 0 else len(data) + cut])
    before = _sha(chk, dcd, csv)
    sim = run["simulation"]()
    x0 = sim.context.getState(getPositions=True).getPositions(asNumpy=True)
    with pytest.raises(ValueError, match=rf"checkpoint {chk}: .*(truncated|OpenMM could not load)"):
        resume_simulation(sim, chk, dcd=[dcd], csv=[csv])
    assert _sha(chk, dcd, csv) == before
    np.testing.assert_array_equal(sim.context.getState(getPositions=True).getPositions(asNumpy=True), x0)
    sim.step(1)  # the Context still runs


@pytest.mark.parametrize("kind", ["text", "bad_header"])
def test_resume_not_a_checkpoint(run, outputs, kind):
    chk, dcd, csv = outputs
    if kind == "text":
        chk.write_text("not a checkpoint\n")
    else:  # the right length, but OpenMM refuses it
        chk.write_bytes(b"X" + chk.read_bytes()[1:])
    before = _sha(chk, dcd, csv)
    match = "holds 17 bytes but a checkpoint of this Simulation takes" if kind == "text" else "OpenMM could not load"
    with pytest.raises(ValueError, match=rf"checkpoint {chk}: {match}"):
        resume_simulation(run["simulation"](), chk, dcd=[dcd], csv=[csv])
    assert _sha(chk, dcd, csv) == before


def test_resume_checkpoint_of_another_bundle(run, outputs):
    chk, dcd, csv = outputs
    other = save_bundle(chk.parent / "other.mlcg", *_modules(), {**META, "velocity_std": 0.02}, mapping=run["mapping"])
    sim = create_simulation(run["topology"], run["system"],
                            LearnedIntegrator(other, history=run["frames"], device="cpu"),
                            openmm.Platform.getPlatformByName("Reference"))
    before = _sha(chk, dcd, csv)
    with pytest.raises(ValueError, match=rf"bundle: the checkpoint {chk} was written by bundle [0-9a-f]+\.\.\. but "
                                         "this integrator runs bundle"):
        resume_simulation(sim, chk, dcd=[dcd], csv=[csv])
    assert _sha(chk, dcd, csv) == before and sim.context.getStepCount() == 0


@pytest.mark.parametrize("cut", [0.6, 0.8, 0.95, -4])
def test_truncated_checkpoint_loaded_directly_refused_at_the_next_step(run, outputs, cut):
    chk = outputs[0]
    data = chk.read_bytes()
    before = _sha(chk)
    sim = run["simulation"]()
    try:
        sim.context.loadCheckpoint(data[: int(len(data) * cut) if cut > 0 else len(data) + cut])
    except openmm.OpenMMException:
        return  # OpenMM refused it itself
    with pytest.raises(ValueError, match=r"integrator state .*check value.*truncated"):
        sim.step(1)
    assert _sha(chk) == before


def test_integrator_record_mixed_from_two_runs(run):
    sim = run["simulation"]()
    sim.step(1)
    integ = sim.integrator
    integ.setPerDofVariableByName("h0", integ.getPerDofVariableByName("h0")[::-1])  # not through the integrator
    integ.setGlobalVariableByName("sync_token", integ.getGlobalVariableByName("sync_token") + 1)
    with pytest.raises(ValueError, match=r"checkpoint x\.chk: the LearnedIntegrator record .*check value"):
        integ.check_state("checkpoint x.chk")


# ------------------------------------------------------------------------------------------- 3: binary as text
def test_config_loader_refuses_a_bundle(run):
    from openmm_mlcg.train.config import TrainConfig

    before = _sha(run["bundle"])
    with pytest.raises(ValueError, match=r"config: .*model\.mlcg is an openmm_mlcg model bundle .*did you swap"):
        TrainConfig.from_yaml(run["bundle"])
    assert _sha(run["bundle"]) == before


def test_cli_check_with_bundle_and_config_swapped(capsys, run, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("training:\n  n_steps: 5\n")
    before = _sha(cfg, run["bundle"])
    rc, err = _cli(capsys, "check", cfg, run["bundle"])
    assert rc == 2 and "model.mlcg is an openmm_mlcg model bundle" in err and "BUNDLE and CONFIG" in err
    assert _sha(cfg, run["bundle"]) == before


def test_read_json_refuses_binary(run, tmp_path):
    from openmm_mlcg.io.readers import read_json

    p = tmp_path / "metadata.json"
    p.write_bytes((run["dir"] / "cg.dcd").read_bytes())
    with pytest.raises(ValueError, match=r"path: .*metadata\.json is a DCD trajectory of \d+ bytes, expected"):
        read_json(p, "run metadata")


# ------------------------------------------------------------------------------------------- 4: empty DCD
def test_analyze_empty_dcd_says_empty(capsys, run, tmp_path):
    from openmm_mlcg.analysis.files import load_cg_positions

    empty = tmp_path / "empty.dcd"
    empty.write_bytes(b"")
    top = run["dir"] / "cg.pdb"
    before = _sha(empty, top)
    with pytest.raises(ValueError, match=r"trajectory: .*empty\.dcd is empty \(0 bytes\)"):
        load_cg_positions(empty, top)
    rc, err = _cli(capsys, "analyze", f"run={empty}", "--topology", top, "--out", tmp_path / "a")
    assert rc == 2 and "empty.dcd is empty (0 bytes)" in err
    assert _sha(empty, top) == before


def test_analyze_dcd_of_another_system(run, tmp_path):
    from openmm_mlcg.analysis.files import load_cg_positions

    other = _write_dcd(tmp_path / "other.dcd", 65, 3)
    with pytest.raises(ValueError, match=r"trajectory: .*other\.dcd holds 65 particles per frame, expected 4 "
                                         r"\(the atoms of topology .*cg\.pdb\)"):
        load_cg_positions(other, run["dir"] / "cg.pdb")


# ------------------------------------------------------------------------------------------- 5: truncated bundle
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, -1])
def test_truncated_bundle(run, tmp_path, cut):
    data = run["bundle"].read_bytes()
    p = tmp_path / "cut.mlcg"
    p.write_bytes(data[: int(len(data) * cut) if cut > 0 else len(data) + cut])
    before = _sha(p)
    with pytest.raises(ValueError, match=rf"path: .*cut\.mlcg \({p.stat().st_size} bytes\) is truncated or not a "
                                         "bundle"):
        load_bundle(p)
    assert _sha(p) == before


def test_not_a_bundle_says_what_it_is(run, tmp_path):
    p = tmp_path / "notes.mlcg"
    p.write_text("hello\n")
    with pytest.raises(ValueError, match=r"path: .*notes\.mlcg is not an openmm_mlcg model bundle .*a text file"):
        load_bundle(p)


# ------------------------------------------------------------------------------------------- 6: Angstrom
def _chain_nm(n_atoms: int, n_frames: int = 2) -> np.ndarray:
    x = np.zeros((n_frames, n_atoms, 3))
    x[:, :, 0] = np.arange(n_atoms) * 0.15  # C-C bonds of 0.15 nm
    return x


def test_map_positions_refuses_angstrom_numbers(run):
    m = run["mapping"]
    x = _chain_nm(m.graph.n_atoms)
    with pytest.raises(ValueError, match=r"xyz: bonded particles \d+ and \d+ are 1\.5 nm apart .*expected <= 0\.5 "
                                         r"nm.*Angstrom instead of nm"):
        m.map_positions(x * 10.0)


def test_map_positions_converts_quantities(run):
    m = run["mapping"]
    x = _chain_nm(m.graph.n_atoms)
    np.testing.assert_allclose(m.map_positions(x * 10.0 * unit.angstrom), m.map_positions(x), atol=1e-12)


# ------------------------------------------------------------------------------------------- 7: export bytes
EXPORT = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from openmm_mlcg.bundle.export import save_bundle
    from openmm_mlcg.nn.dynamics_gnn import DynamicsGNN
    from openmm_mlcg.nn.embedding import EmbeddingGNN
    from openmm_mlcg.nn.score import ScoreGNN
    torch.manual_seed(0)
    modules = (EmbeddingGNN(n_atom_types=1, hidden=8, layers=1), DynamicsGNN(embedding_dim=8, history=2, hidden=8,
               layers=1), ScoreGNN(latent_dim=8, hidden=8, layers=1))
    save_bundle(sys.argv[1], *modules, json.loads(sys.argv[2]))
""")


def test_export_is_byte_identical_across_processes(tmp_path):
    """TorchScript declares module constants in set order, which follows the per-process string hashing: two
    processes with other PYTHONHASHSEEDs export the same weights (and the same ``created``) to the same bytes."""
    import json

    paths = [tmp_path / "a.mlcg", tmp_path / "b.mlcg"]
    procs = []
    for seed, p in zip(("1", "2"), paths):  # run side by side
        env = dict(os.environ, PYTHONHASHSEED=seed, SOURCE_DATE_EPOCH="1700000000", OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-c", EXPORT, str(p), json.dumps(META)], env=env,
                                      stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    assert _sha(*paths)[0] == _sha(*paths)[1]


def test_reexport_in_this_process_is_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = save_bundle(tmp_path / "a.mlcg", *_modules(), META)
        b = save_bundle(tmp_path / "b.mlcg", *_modules(), META)
    assert _sha(a) == _sha(b)
