"""The package's shape: the runtime never imports the trainer, no import cycles, the registries own their names.

The import graph is read from the source (every ``import`` and ``from ... import``, at module level or inside a
function): an edge runs from a module to the most specific module it names (``from pkg import mod`` names
``pkg.mod``; ``from pkg import name`` names ``pkg``, i.e. its ``__init__``).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "openmm_mlcg"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
    """{module: set of openmm_mlcg modules it imports}."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 80 and graph["openmm_mlcg.model.core"]            # the graph was read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_runtime_modules_never_reach_the_trainer_in_the_source():
    graph = import_graph()
    runtime = ["openmm_mlcg.openmm", "openmm_mlcg.bundle", "openmm_mlcg.model", "openmm_mlcg.generators",
               "openmm_mlcg.priors", "openmm_mlcg.model.simulator", "openmm_mlcg.bundle.export"]
    seen, todo = set(), list(runtime)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert not [m for m in seen if m.startswith("openmm_mlcg.train")]


def test_running_a_bundle_imports_nothing_of_the_trainer():
    """In a fresh interpreter: load a bundle, bind it to its system and step it; no ``openmm_mlcg.train``
    module is imported (lazy imports included)."""
    code = f"""
import sys, numpy as np, torch
sys.path.insert(0, {str(ROOT / 'tests')!r})
from openmm_mlcg.openmm import LearnedIntegrator  # noqa: F401
from openmm_mlcg.bundle.export import load_bundle
from openmm_mlcg.model.simulator import LearnedSimulator
from chain_systems import chain_ion_system
traj, mapping = chain_ion_system()
sim = LearnedSimulator(load_bundle({str(ROOT / 'tests' / 'data' / 'format2_cg_langevin.mlcg')!r}), mapping)
x, h = sim.history_from_positions(traj.positions[-3:])
sim.step(x, h, torch.as_tensor(traj.box[-1]), n_steps=1, generator=torch.Generator().manual_seed(0))
print(sorted(m for m in sys.modules if m.startswith("openmm_mlcg.train")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_generator_and_score_term_registries_refuse_unknown_names():
    from openmm_mlcg.generators import generator_names, get_generator
    from openmm_mlcg.priors import SCORE_TERMS, validate_score_terms

    assert generator_names()[0] == "cg_langevin"
    assert set(generator_names()) == {"cg_langevin", "interpolant", "ode", "ancestral", "langevin"}
    with pytest.raises(ValueError, match=r"sampler: expected one of the generators \['cg_langevin'.*got 'euler'"):
        get_generator("euler")
    assert sorted(SCORE_TERMS, key=lambda k: SCORE_TERMS[k].order) == ["excluded_volume", "bond_prior",
                                                                       "pair_correction", "angle_correction"]
    with pytest.raises(ValueError,
                       match=r"score_terms: expected one of the score terms \['angle_correction', .*got 'dihedral'"):
        validate_score_terms({"dihedral": {}}, "score_terms")
