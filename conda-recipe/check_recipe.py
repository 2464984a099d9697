"""Render conda-recipe/recipe.yaml offline with rattler-build (py-rattler-build) and check it against the package.

rattler-build reads only the v1 recipe format (recipe.yaml); meta.yaml is conda-build's format, which it
cannot parse (see README.md here). This renders recipe.yaml (Jinja, selectors, schema: no network, no solve)
and checks that it agrees with what it duplicates:

* its version with ``openmm_mlcg/_version.py``;
* its entry point with setup.py's ``console_scripts``;
* its host / run requirements, run constraints, test imports and entry point with meta.yaml's;
* every test import names a module of the package.

Usage: python conda-recipe/check_recipe.py    (CI: .ci/run; needs ``pip install py-rattler-build``). Exit 1 with
one line per disagreement.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def render_v1(path: Path) -> dict:
    """The rendered (stage-1) recipe as a dict, for the noarch variant."""
    from rattler_build import Stage0Recipe

    variants = Stage0Recipe.from_file(str(path)).render()
    if len(variants) != 1:
        raise SystemExit(f"{path}: expected one noarch variant, rendered {len(variants)}")
    return variants[0].recipe.to_dict()


def load_meta(path: Path) -> dict:
    """meta.yaml as YAML: ``{% ... %}`` statements dropped, ``{{ ... }}`` expressions kept as text."""
    text = re.sub(r"(?m)^\s*\{%.*?%\}\s*$", "", path.read_text())
    text = re.sub(r"\{\{(.*?)\}\}", lambda m: "JINJA(" + m.group(1).strip() + ")", text)
    return yaml.safe_load(text)


def _norm_entry(ep: str) -> str:
    return re.sub(r"\s*=\s*", " = ", ep.strip())


def _norm_spec(spec: str) -> str:
    """A match spec as rattler renders it: leading zeros of version components dropped (2023.09 -> 2023.9)."""
    return re.sub(r"(?<=\.)0+(?=\d)", "", " ".join(str(spec).split()))


def check() -> list:
    """Disagreements, one message each (empty: all agree)."""
    problems = []
    rendered = render_v1(HERE / "recipe.yaml")
    meta = load_meta(HERE / "meta.yaml")

    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "openmm_mlcg" / "_version.py").read_text()).group(1)
    if str(rendered["package"]["version"]) != version:
        problems.append(f"recipe.yaml version {rendered['package']['version']} != openmm_mlcg/_version.py {version}")

    setup_eps = re.findall(r'"console_scripts":\s*\[([^\]]*)\]', (ROOT / "setup.py").read_text())
    setup_eps = sorted(_norm_entry(e) for e in re.findall(r'"([^"]+)"', setup_eps[0])) if setup_eps else []
    v1_eps = sorted(_norm_entry(e) for e in rendered["build"].get("python", {}).get("entry_points", []))
    meta_eps = sorted(_norm_entry(e) for e in meta["build"].get("entry_points", []))
    if v1_eps != setup_eps:
        problems.append(f"recipe.yaml entry points {v1_eps} != setup.py console_scripts {setup_eps}")
    if meta_eps != v1_eps:
        problems.append(f"meta.yaml entry points {meta_eps} != recipe.yaml {v1_eps}")

    req = rendered.get("requirements", {})
    for v1_key, meta_key in (("host", "host"), ("run", "run"), ("run_constraints", "run_constrained")):
        a = [_norm_spec(x) for x in req.get(v1_key, [])]
        b = [_norm_spec(x) for x in meta["requirements"].get(meta_key, [])]
        if a != b:
            problems.append(f"requirements: recipe.yaml {v1_key} {a} != meta.yaml {meta_key} {b}")

    v1_imports = [m for t in rendered.get("tests", []) for m in t.get("python", {}).get("imports", [])]
    meta_imports = list(meta.get("test", {}).get("imports", []))
    if v1_imports != meta_imports:
        problems.append(f"test imports: recipe.yaml {v1_imports} != meta.yaml {meta_imports}")
    for mod in v1_imports:
        base = ROOT.joinpath(*mod.split("."))
        if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
            problems.append(f"test import {mod}: no such module in the repository")
    return problems


def main() -> int:
    problems = check()
    for p in problems:
        print(f"conda-recipe: {p}", file=sys.stderr)
    if not problems:
        print("conda-recipe: recipe.yaml renders offline and agrees with meta.yaml, setup.py and _version.py")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
