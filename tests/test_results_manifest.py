"""benchmarks/results/manifest.json names every result file, and every current result names the script that made it.

benchmarks/results/ holds current/ (what the shipped default is judged on today, cited by README.md) and
archive/ (historical ablations and superseded runs); nothing else lies directly in it besides the manifest.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MANIFEST = RESULTS / "manifest.json"
KEYS = {"file", "status", "script", "command", "commit", "date", "superseded_by", "note"}


@pytest.fixture(scope="module")
def entries():
    doc = json.loads(MANIFEST.read_text())
    return doc["files"]


def _files(folder: str):
    """Result files under ``folder``; ``--smoke`` outputs (pipeline checks, git-ignored) are not results."""
    return sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / folder).rglob("*")
                  if p.is_file() and "_smoke" not in p.name)


def test_only_current_archive_and_manifest_at_top_level():
    top = sorted(p.name for p in RESULTS.iterdir())
    assert top == ["archive", "current", "manifest.json"], f"benchmarks/results/ holds {top}"


def test_entries_are_complete_and_unique(entries):
    names = [e["file"] for e in entries]
    assert len(names) == len(set(names)), "a file is listed twice in the manifest"
    for e in entries:
        assert set(e) == KEYS, f"{e['file']}: keys {sorted(set(e) ^ KEYS)} missing or unexpected"
        assert e["status"] in ("current", "archive") and e["file"].startswith(e["status"] + "/"), e["file"]
        assert re.fullmatch(r"[0-9a-f]{7,40}", e["commit"]), f"{e['file']}: commit {e['commit']!r}"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", e["date"]), f"{e['file']}: date {e['date']!r}"
        if e["script"] is None or e["command"] is None:
            assert e["note"], f"{e['file']}: no script or command and no note saying why"


def test_every_result_file_is_in_the_manifest(entries):
    listed = {e["file"] for e in entries}
    missing = [f for f in _files("current") + _files("archive") if f not in listed]
    assert not missing, f"result files without a manifest entry: {missing}"


def test_every_manifest_entry_exists(entries):
    absent = [e["file"] for e in entries if not (RESULTS / e["file"]).is_file()]
    assert not absent, f"manifest entries without a file: {absent}"
    for e in entries:
        if e["superseded_by"] is not None:
            assert (RESULTS / e["superseded_by"]).is_file(), f"{e['file']}: superseded_by {e['superseded_by']}"


def test_current_results_name_an_existing_script(entries):
    for e in entries:
        if e["status"] != "current":
            continue
        assert e["script"] and (ROOT / e["script"]).is_file(), f"{e['file']}: script {e['script']!r} not in the repo"
        assert e["command"] and e["script"] in e["command"], f"{e['file']}: command does not run {e['script']}"
        assert e["superseded_by"] is None, f"{e['file']}: a current result cannot be superseded"
    for e in entries:  # an archived result that names a script names one that exists (or says null)
        if e["script"] is not None:
            assert (ROOT / e["script"]).is_file(), f"{e['file']}: script {e['script']!r} not in the repo"


def test_no_manifest_entry_is_git_ignored(entries):
    """A listed result that .gitignore hides exists here but not in a clean checkout (CI)."""
    import shutil
    import subprocess
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [f"benchmarks/results/{e['file']}" for e in entries]
    out = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    ignored = out.stdout.split()
    assert not ignored, f"manifest entries that .gitignore hides (absent from a clean checkout): {ignored}"
