"""The README's Python blocks run as written, in order, on smoke-scale outputs (so they cannot rot).

The fixture makes what ``python examples/run_spe.py --smoke`` leaves in ``examples/output/spe_smoke``
(reference run + trained bundle) in a temporary working directory, with a shorter reference MD and no learned
run or analysis. Each block then runs in a fresh namespace (blocks must be complete), from that directory.
A block preceded by the line ``<!-- readme-test: skip -->`` is not run (none is at present).
"""
import re
import runpy
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = "<!-- readme-test: skip -->"


def python_blocks(text: str) -> list[str]:
    """```python blocks of a Markdown text, without those marked with SKIP on the line before."""
    out = []
    for m in re.finditer(r"(?m)^```python\n(.*?)^```", text, flags=re.S):
        before = text[:m.start()].rstrip().splitlines()[-1:] or [""]
        if before[0].strip() != SKIP:
            out.append(m.group(1))
    return out


@pytest.fixture(scope="module")
def smoke_outputs(tmp_path_factory):
    from openmm_mlcg.data import load_run
    from openmm_mlcg.experiments.spe import SCALES, _train_config
    from openmm_mlcg.systems import spe
    from openmm_mlcg.train import train_on_trajectories

    work = tmp_path_factory.mktemp("readme")
    run = work / "examples" / "output" / "spe_smoke"
    s = SCALES["smoke"]
    system = spe.build_spe(seed=0, **s["build"])
    spe.simulate(system, run / "reference", equilibration_ps=0.5, production_ps=4.0,
                 frame_interval_ps=s["frame_interval_ps"], seed=0, progress_bar=False)
    mapping, cg = load_run(run / "reference", group_size=7, seed=0)
    cfg = _train_config(s, run / "train", 0, "cpu", temperature_K=353.0)
    cfg["training"]["progress"] = False
    train_on_trajectories([cg], [mapping], cfg)
    return work


def test_readme_python_blocks_run(smoke_outputs, monkeypatch, capsys):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 3, "README: expected the coarse-grain, OpenMM and analysis blocks"
    monkeypatch.chdir(smoke_outputs)
    for i, code in enumerate(blocks):
        path = smoke_outputs / f"readme_block_{i}.py"
        path.write_text(code)
        t0 = time.perf_counter()
        runpy.run_path(str(path), run_name="__main__")
        print(f"README block {i}: {time.perf_counter() - t0:.1f} s")
    out = capsys.readouterr().out
    assert "CGTrajectory(" in out and "training windows" in out
    assert (smoke_outputs / "cg.dcd").is_file() and (smoke_outputs / "analysis" / "analysis.json").is_file()
    # the learned run's interval came from its DCD header: 10 x the model step (0.2 ps) = 2 ps per frame
    assert "'frame_interval_ps': 2.0" in out or "'frame_interval_ps': 1.99999" in out


def test_example_yaml_points_at_what_generate_writes():
    """examples/train_spe.yaml lists the folders the README's `generate spe` line writes (spe_<i>_<polymer>)."""
    import yaml

    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("openmm-mlcg generate spe") and "examples/spe_runs" in ln)
    polymers = line.split("--polymer")[1].split("--")[0].split()
    expected = [f"spe_runs/spe_{i:03d}_{p.replace(':', '-')}" for i, p in enumerate(polymers)]
    cfg = yaml.safe_load((ROOT / "examples" / "train_spe.yaml").read_text())
    assert [s["dir"] for s in cfg["data"]["systems"]] == expected
