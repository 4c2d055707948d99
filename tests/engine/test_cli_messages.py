"""Small or degenerate inputs end with one line naming the cause, never NaN or a bare verdict.

`nbo lift` before both groups have closed decisions, `nbo evaluate` on too few rows, without a
candidate, or with a bad argument (refused before the data is read).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.core import Engine
from engine.journal.cli import NOT_ENOUGH_DATA
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
CONTEXT = {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic", "payment_failures": 0}


def _logs(tmp_path: Path, n_rounds: int) -> Path:
    path = tmp_path / f"logs{n_rounds}.parquet"
    pq.write_table(to_table(make_logs(LinearEnv.make(3, 3, seed=8), n_rounds, seed=9)), path)
    return path


def _evaluate(*args: str) -> int:
    return main(["evaluate", *args, "--workers", "0", "--no-progress", "--bootstrap", "20"])


def test_lift_without_closed_decisions_says_what_is_missing(tmp_path, capsys):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "data")
    eng.decide_batch([f"c{i}" for i in range(20)], [CONTEXT] * 20)  # pending: nothing closed
    eng.close()
    out = tmp_path / "lift.json"
    code = main(["lift", "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == NOT_ENOUGH_DATA == 3
    assert (
        "no lift yet: no closed control decisions yet (n_control = 0): lift needs rewards "
        in printed
    )
    assert "nan" not in printed.lower()
    report = json.loads(out.read_text())
    assert report["lift"] is None and report["missing"].startswith("no closed control")


def test_evaluate_refuses_a_single_row_naming_the_split(tmp_path, capsys):
    assert _evaluate("--logs", str(_logs(tmp_path, 1)), "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "nbo evaluate: error: logs: expected at least 2 closed decisions in the evaluation split "
        "(the later 50% of the rows, by time), got 1 of 1 closed decisions"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "linucbb"], "--policy linucbb: expected one of linucb, lints"),
        (
            ["--policy", "linucb:alfa=1"],
            "--policy linucb(alfa=1): expected a hyperparameter of LinUCB (one of alpha,",
        ),
        (["--policy", "linucb:alpha=-1"], "--policy linucb(alpha=-1): expected alpha to be a"),
        (["--primary", "drr"], "--primary: expected one of the --estimators"),
        (["--estimators", "ips,snips"], "--primary: expected one of the --estimators ips, snips"),
        (["--train-fraction", "1"], "--train-fraction: expected a number in [0, 1), got 1.0"),
        (["--control-offer", "gift", "--actions", "a,b"], "--control-offer: expected one of"),
    ],
)
def test_bad_arguments_fail_before_the_logs_are_read(tmp_path, capsys, args, message):
    missing = tmp_path / "not-there.parquet"  # reading it would fail with another message
    assert _evaluate("--logs", str(missing), *args, "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert message in err and "not-there" not in err


def test_control_offer_is_checked_against_the_parquet_metadata_first(tmp_path, capsys):
    table = to_table(make_logs(LinearEnv.make(3, 3, seed=8), 50, seed=9))
    offers = json.dumps(["offer0", "offer1", "offer2"]).encode()
    path = tmp_path / "export.parquet"  # as nbo export writes it: the offer ids in the metadata
    pq.write_table(
        table.replace_schema_metadata({**table.schema.metadata, b"nbo.offer_ids": offers}), path
    )
    assert _evaluate("--logs", str(path), "--control-offer", "gift", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "--control-offer: expected one of ['offer0', 'offer1', 'offer2'], got gift" in err
    assert "read 50 decisions" not in err


def test_evaluate_without_candidates_says_so(tmp_path, capsys):
    out = tmp_path / "r"
    assert _evaluate("--logs", str(_logs(tmp_path, 400)), "--out", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("NO-GO: no candidate policy was given (--policy)")
    report = json.loads((out / "evaluation.json").read_text())
    assert report["decision"]["verdict"] == printed[0]


def test_small_logs_name_the_cause_and_print_the_candidate_table(tmp_path, capsys):
    out = tmp_path / "r"
    code = _evaluate("--logs", str(_logs(tmp_path, 50)), "--policy", "linucb", "--out", str(out))
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert code == 0
    assert lines[0].startswith("NO-GO: too little data to judge any candidate on 25 evaluation")
    assert "effective sample size" in lines[0] and "at least 100" in lines[0]
    assert lines[1].strip().startswith("evaluated on the later 25 of 50 decisions (by time)")
    assert "static candidates" in lines[1] and "learning candidates" in lines[1]
    header = next(line for line in lines if line.startswith("candidate "))
    assert header.split() == ["candidate", "kind", "dr", "low", "high", "ESS", "support", "note"]
    for label in ("linucb static", "linucb learning", "logging policy", "uniform random"):
        assert any(line.startswith(label) for line in lines), label
    assert "nan" not in printed.lower()
    page = (out / "report.html").read_text()
    assert "<h2>Settings</h2>" in page and "evaluation rows (later)" in page
    assert "<b>static</b>" in page and "<b>learning</b>" in page and "{&quot;" not in page
