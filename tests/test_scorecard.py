"""benchmarks/scorecard.py: the README's scorecard table is the one generated from the committed scorecard.json,
and the verdicts follow the targets (a learned number on the wrong side of its limit is never a PASS)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CARD = ROOT / "benchmarks" / "results" / "current" / "scorecard.json"


@pytest.fixture(scope="module")
def scorecard():
    import scorecard as sc
    return sc


def test_readme_table_is_generated_from_the_committed_scorecard(scorecard):
    if not CARD.is_file():
        pytest.skip("no committed scorecard yet")
    card = json.loads(CARD.read_text())
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- scorecard:start -->\n", 1)[1].split("\n<!-- scorecard:end -->", 1)[0]
    assert table == scorecard.markdown(card), "README table differs: run benchmarks/scorecard.py --collect-only --readme"


def test_verdicts_follow_the_targets(scorecard):
    liquid = dict(variants={scorecard.LIQUID_DEFAULT: dict(rollout=dict(gr_error=0.03, nn_below_ref_q001=0.02,
                                                                        D_ratio=1.05))},
                  short_md_gr_error={"50 ps": 0.01})
    rows = {r["metric"]: r["verdict"] for r in scorecard.liquid_rows(liquid, "x")}
    assert rows == {"g(r) error of the rollout": "FAIL",                       # 0.03 > 2 x 0.01
                    "NN distances below the reference's 0.1 % quantile": "FAIL",  # 2 % > 0.5 %
                    "D / D_ref": "PASS"}                                        # 5 % off
    liquid["variants"][scorecard.LIQUID_DEFAULT]["rollout"].update(gr_error=0.015, nn_below_ref_q001=0.001,
                                                                     D_ratio=0.85)
    rows = {r["metric"]: r["verdict"] for r in scorecard.liquid_rows(liquid, "x")}
    assert list(rows.values()) == ["PASS", "PASS", "FAIL"]
