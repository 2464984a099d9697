"""The README's code blocks run as written, in order, at smoke scale (so they cannot rot).

Python blocks: the fixture makes what ``python examples/run_spe.py --smoke`` leaves in ``examples/output/spe_smoke``
(reference run + trained bundle) in a temporary working directory, with a shorter reference MD and no learned
run or analysis. Each block then runs in a fresh namespace (blocks must be complete), from that directory.
A block preceded by the line ``<!-- readme-test: skip -->`` is not run (none is at present).

Shell blocks (```bash): every line is one of
* an ``openmm-mlcg`` command, run in-process (``main(argv)``) exactly as written, with the smoke substitutions
  listed in ``SMOKE`` where the full run takes minutes: ``run`` / ``analyze`` / ``coarse-grain`` on the outputs
  of the Python blocks (in README order), ``generate`` / ``train`` / ``check`` in a fresh folder;
* a command listed in ``OTHER_COMMANDS``, checked as that table says (installs and the full main job are not run:
  the reason is stated there).
A shell line that fits none of these fails the test, so a new README command needs a smoke check here.
"""
import contextlib
import importlib.util
import io
import re
import runpy
import shlex
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP = "<!-- readme-test: skip -->"

#: openmm-mlcg subcommands run on the outputs of the Python blocks, interleaved with them in README order
RUNTIME = ("run", "analyze", "coarse-grain")
#: openmm-mlcg subcommands run in a fresh folder, in README order (they make and use their own data)
DATA = ("generate", "train", "check")
#: smoke substitutions, per subcommand: options appended to the line as written, or (train) the config the line
#: names, copied from the repository with these overrides (sizes and steps only; its data paths stay as written)
SMOKE = {
    "generate": ["--scale", "smoke"],   # ~250-atom boxes / 10-bead chains, seconds (documented `--scale smoke`)
    "train": {"data": {"history": 2, "val_fraction": 0.0},
              "model": {"embedding_hidden": 8, "embedding_layers": 1, "dynamics_hidden": 8, "dynamics_layers": 1,
                        "score_hidden": 8, "score_layers": 1},
              "score": {"n_levels": 2, "cg_langevin": {"calibration_starts": 1}},
              "training": {"n_steps": 2, "eval_every": 1, "checkpoint_every": 1, "device": "cpu",
                           "progress": False}},
}
#: shell commands of the README that are not openmm-mlcg lines: prefix -> how this test checks them (and why)
OTHER_COMMANDS = {
    "pip install": "not run (installs packages, needs the network); the extras and the constraints file it names "
                   "must exist in setup.py / the repository",
    "python examples/run_spe.py": "not run in full (the main job: ~20 min at demo scale; tests/test_example_spe.py "
                                  "runs its --smoke path); its options must parse (--help)",
    "python -m pytest tests": "not run (the test suite itself); the tests folder must exist",
}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of the ```python and ```bash blocks of a Markdown text, in order, without those marked
    with SKIP on the line before."""
    out = []
    for m in re.finditer(r"(?m)^```(python|bash)\n(.*?)^```", text, flags=re.DOTALL):
        before = text[:m.start()].rstrip().splitlines()[-1:] or [""]
        if before[0].strip() != SKIP:
            out.append((m.group(1), m.group(2)))
    return out


def python_blocks(text: str) -> list[str]:
    """```python blocks of a Markdown text, without those marked with SKIP on the line before."""
    return [code for lang, code in code_blocks(text) if lang == "python"]


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block as argv lists: continuation lines joined, comments dropped, ``&&`` split."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1:]
    return commands


def subcommand(argv: list[str]) -> str:
    """The subcommand of an ``openmm-mlcg`` argv (skipping the top-level options and their values)."""
    words = iter(argv[1:])
    for w in words:
        if w == "--threads":
            next(words, None)
        elif not w.startswith("-"):
            return w
    return ""


def classify(argv: list[str]) -> str:
    """'runtime', 'data' (openmm-mlcg subcommands) or the OTHER_COMMANDS prefix; ValueError for anything else."""
    if argv[0] == "openmm-mlcg":
        sub = subcommand(argv)
        if sub in RUNTIME:
            return "runtime"
        if sub in DATA:
            return "data"
    line = " ".join(argv)
    for prefix in OTHER_COMMANDS:
        if line.startswith(prefix):
            return prefix
    raise ValueError(f"README shell line without a smoke check in tests/test_readme.py: {line!r}")


def readme_blocks() -> list[tuple[str, object]]:
    """README blocks in order: ("python", code) and ("bash", [argv, ...])."""
    return [(lang, code if lang == "python" else shell_commands(code))
            for lang, code in code_blocks((ROOT / "README.md").read_text())]


def run_cli(argv: list[str]) -> str:
    """``openmm-mlcg`` argv run in-process; returns its stdout (asserts exit status 0, showing stderr if not)."""
    from openmm_mlcg.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv[1:])
    assert rc == 0, f"{' '.join(argv)} -> exit {rc}: {err.getvalue()[-2000:]}"
    return out.getvalue()


def smoke_argv(argv: list[str], work: Path) -> list[str]:
    """The argv with the SMOKE substitution of its subcommand applied (train: writes the smoke config)."""
    sub = subcommand(argv)
    if sub == "generate":
        return argv + SMOKE["generate"]
    if sub == "train":
        config = argv[argv.index("train") + 1]
        cfg = yaml.safe_load((ROOT / config).read_text())
        for section, values in SMOKE["train"].items():
            for key, value in values.items():
                if isinstance(value, dict):
                    cfg.setdefault(section, {}).setdefault(key, {}).update(value)
                else:
                    cfg.setdefault(section, {})[key] = value
        (work / config).parent.mkdir(parents=True, exist_ok=True)
        (work / config).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return argv


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


def test_readme_python_blocks_and_runtime_commands_run(smoke_outputs, monkeypatch):
    """Python blocks and the `openmm-mlcg run/analyze/coarse-grain` lines, in README order, as written."""
    blocks = readme_blocks()
    assert sum(lang == "python" for lang, _ in blocks) >= 3, "README: expected the coarse-grain, OpenMM and analysis blocks"
    monkeypatch.chdir(smoke_outputs)
    out, ran = io.StringIO(), []
    for i, (lang, block) in enumerate(blocks):
        t0 = time.perf_counter()
        if lang == "python":
            path = smoke_outputs / f"readme_block_{i}.py"
            path.write_text(block)
            with contextlib.redirect_stdout(out):
                runpy.run_path(str(path), run_name="__main__")
        else:
            for argv in (a for a in block if classify(a) == "runtime"):
                out.write(run_cli(argv))
                ran.append(subcommand(argv))
        print(f"README block {i} ({lang}): {time.perf_counter() - t0:.1f} s")
    text = out.getvalue()
    assert "CGTrajectory(" in text and "training windows" in text
    assert (smoke_outputs / "cg.dcd").is_file() and (smoke_outputs / "analysis" / "analysis.json").is_file()
    # the learned run's interval came from its DCD header: 10 x the model step (0.2 ps) = 2 ps per frame
    assert "'frame_interval_ps': 2.0" in text or "'frame_interval_ps': 1.99999" in text
    assert "learned: 2 ps per frame (DCD header" in text   # the CLI prints it rounded
    assert ran.count("run") >= 2 and "analyze" in ran
    from openmm_mlcg.io.dcd import dcd_frame_count

    assert "resumed at step 100" in text and dcd_frame_count(smoke_outputs / "cg_run" / "cg.dcd") == 20


def test_readme_data_and_training_commands_run(tmp_path, monkeypatch):
    """The `openmm-mlcg generate/train/check` lines, in README order, as written plus the SMOKE substitutions."""
    monkeypatch.chdir(tmp_path)
    ran = []
    for lang, block in readme_blocks():
        for argv in (a for a in (block if lang == "bash" else []) if classify(a) == "data"):
            t0 = time.perf_counter()
            run_cli(smoke_argv(argv, tmp_path))
            ran.append(subcommand(argv))
            print(f"{' '.join(argv[:3])}: {time.perf_counter() - t0:.1f} s")
    assert ran.count("generate") >= 2 and ran.count("train") >= 2 and "check" in ran
    assert sorted(p.name for p in (tmp_path / "examples" / "spe_runs").glob("spe_*")) == \
        ["spe_000_PEO", "spe_001_PPO", "spe_002_PEO-PTMO"]
    assert (tmp_path / "examples" / "runs" / "spe_cpu" / "model.mlcg").is_file()
    assert (tmp_path / "examples" / "runs" / "spe" / "model.mlcg").is_file()


def test_readme_other_shell_commands_are_checked(monkeypatch, capsys):
    """Every README shell line is covered: openmm-mlcg lines by the two tests above, the rest by OTHER_COMMANDS."""
    kinds = [classify(argv) for lang, block in readme_blocks() if lang == "bash" for argv in block]
    assert "runtime" in kinds and "data" in kinds
    setup = (ROOT / "setup.py").read_text()
    for lang, block in readme_blocks():
        for argv in (block if lang == "bash" else []):
            kind = classify(argv)
            if kind == "pip install":
                if "-c" in argv:
                    assert (ROOT / argv[argv.index("-c") + 1]).is_file()
                for extra in re.findall(r"\.\[(\w+)\]", " ".join(argv)):
                    assert f'"{extra}":' in setup, f"setup.py has no extra {extra!r}"
            elif kind == "python examples/run_spe.py":
                spec = importlib.util.spec_from_file_location("run_spe_example", ROOT / argv[1])
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                with pytest.raises(SystemExit) as exc:
                    module.main([*argv[2:], "--help"])
                assert exc.value.code == 0 and "--smoke" in capsys.readouterr().out
            elif kind == "python -m pytest tests":
                assert (ROOT / "tests").is_dir()


def test_example_yaml_points_at_what_generate_writes():
    """examples/train_spe*.yaml list the folders the README's `generate spe` line writes (spe_<i>_<polymer>)."""
    from openmm_mlcg.systems.spe import parse_polymer

    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("openmm-mlcg generate spe") and "examples/spe_runs" in ln)
    polymers = line.split("--polymer")[1].split("--")[0].split()
    expected = [f"spe_runs/spe_{i:03d}_{'-'.join(parse_polymer(p))}" for i, p in enumerate(polymers)]
    for name in ("train_spe.yaml", "train_spe_cpu.yaml"):
        text = (ROOT / "examples" / name).read_text()
        cfg = yaml.safe_load(text)
        assert [s["dir"] for s in cfg["data"]["systems"]] == expected, name
        header = next(ln for ln in text.splitlines() if ln.startswith("# Data:"))
        assert header.split("# Data:")[1].strip() == line.split("#")[0].strip(), name


def test_example_configs_load_and_validate():
    """Both example configs load and validate (without data or training); the CPU one is CPU-sized."""
    from openmm_mlcg.train.config import load_config

    cpu = load_config(ROOT / "examples" / "train_spe_cpu.yaml")
    gpu = load_config(ROOT / "examples" / "train_spe.yaml")
    assert cpu.training.device == "cpu" and gpu.training.device == "cuda"
    assert cpu.training.n_steps < gpu.training.n_steps and cpu.model.dynamics_hidden < gpu.model.dynamics_hidden
    assert Path(cpu.training.out_dir) == (ROOT / "examples" / "runs" / "spe_cpu").resolve()
    for cfg in (cpu, gpu):
        assert all(Path(s.dir).parent == (ROOT / "examples" / "spe_runs").resolve() for s in cfg.data.systems)


def test_shell_parsing_helpers():
    code = "pip install a && python b.py  # note\nopenmm-mlcg analyze x=\"a b\" \\\n  --out o   # comment\n"
    assert shell_commands(code) == [["pip", "install", "a"], ["python", "b.py"],
                                    ["openmm-mlcg", "analyze", "x=a b", "--out", "o"]]
    assert classify(["openmm-mlcg", "--threads", "1", "run", "b"]) == "runtime"
    with pytest.raises(ValueError, match="without a smoke check"):
        classify(["rm", "-rf", "x"])
