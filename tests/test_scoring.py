"""Scoring: chunks, the all-or-nothing output, the alerts, and the audited scoring run."""

from __future__ import annotations

import os
import re
import socket

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from aiosmtpd.controller import Controller

from fraudops import paths
from fraudops.alerts import Outbox
from fraudops.audit import AuditLog, verify
from fraudops.data import DataValidationError
from fraudops.registry import Registry
from fraudops.rules import read_watchlist, rules_from_params
from fraudops.scoring import (
    ProductionModel,
    SeenIds,
    alert_precision_recall,
    compliance_alerts,
    fraud_alerts,
    known_transactions,
    related_context,
    score_and_alert,
    score_batch,
)

KEY = re.compile(r"^(fraud|compliance:[A-Za-z0-9-]+):tx:(\d+)$")


@pytest.fixture(autouse=True)
def no_channels(monkeypatch):
    """Alerts stay in the outbox: no channel settings leak in from the environment."""
    for name in [n for n in os.environ if n.startswith("FRAUDOPS_")]:
        monkeypatch.delenv(name)


def params(root) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text())


def score(root, **changes):
    """``score_batch`` with the project's own rules and watchlist."""
    settings = params(root)
    arguments = dict(
        rules=rules_from_params(settings["rules"]),
        watchlist=read_watchlist(root / settings["score"]["watchlist"]),
        progress=False,
    )
    return score_batch(root, **{**arguments, **changes})


def by_key(alerts) -> dict:
    return {a.key: (a.kind, a.severity, a.title, a.details) for a in alerts}


def batch(root, rows: int | None = None) -> pd.DataFrame:
    frame = pd.read_parquet(root / paths.SCORE_BATCH)
    return frame if rows is None else frame.head(rows)


# ---------------------------------------------------------------------------------------------
# Chunks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_chunked_scoring_equals_one_chunk(scoring_project, suffix):
    source = scoring_project / f"batch{suffix}"
    frame = batch(scoring_project)
    frame.to_parquet(source) if suffix == ".parquet" else frame.to_csv(source, index=False)

    runs = {}
    for chunk_rows in (500, 100_000):
        out = scoring_project / f"scored_{chunk_rows}.parquet"
        runs[chunk_rows] = score(
            scoring_project, input_path=source, output_path=out, chunk_rows=chunk_rows
        )

    small, whole = runs[500], runs[100_000]
    assert small.rows == whole.rows == len(frame) > 500 * 6
    table = pq.read_table(small.output_path)
    assert table.equals(pq.read_table(whole.output_path))
    assert table.column("transaction_id").to_pylist() == frame["transaction_id"].tolist()
    assert [a.key for a in small.alerts] == [a.key for a in whole.alerts]
    assert by_key(small.alerts) == by_key(whole.alerts)
    assert small.rules_fired == whole.rules_fired and small.fraud_alerts == whole.fraud_alerts


def test_a_failing_chunk_leaves_no_output_and_no_temp_file(scoring_project):
    bad = batch(scoring_project, 1500)
    bad.loc[1234, "amount"] = -5.0  # in the third chunk of 500, after two were written
    source = scoring_project / "incoming" / "bad.csv"
    source.parent.mkdir()
    bad.to_csv(source, index=False)
    out_dir = scoring_project / "scored"

    with pytest.raises(DataValidationError) as caught:
        score(scoring_project, input_path=source, output_path=out_dir / "s.pq", chunk_rows=500)
    message = str(caught.value)
    assert str(source) in message
    assert "column 'amount'" in message and "'amount is not negative'" in message
    assert "broken by 1 rows" in message
    assert list(out_dir.iterdir()) == []


def test_a_failing_run_keeps_the_previous_complete_output(scoring_project):
    out = scoring_project / "scored.parquet"
    score(scoring_project, output_path=out, chunk_rows=1000)
    before = out.read_bytes()
    bad = batch(scoring_project, 1500)
    bad.loc[1400, "timestamp"] = pd.NaT
    source = scoring_project / "bad.parquet"
    bad.to_parquet(source)

    with pytest.raises(DataValidationError, match="column 'timestamp'"):
        score(scoring_project, input_path=source, output_path=out, chunk_rows=500)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.glob(".scored.parquet.*")] == []


def test_a_batch_out_of_time_order_across_chunks_is_refused(scoring_project):
    frame = batch(scoring_project, 600)
    swapped = pd.concat([frame.iloc[300:], frame.iloc[:300]], ignore_index=True)
    source = scoring_project / "swapped.parquet"
    swapped.to_parquet(source)
    out = scoring_project / "scored.parquet"

    with pytest.raises(DataValidationError) as caught:
        score(scoring_project, input_path=source, output_path=out, chunk_rows=300)
    message = str(caught.value)
    assert str(source) in message and "column 'timestamp'" in message
    assert "'rows in time order across chunks'" in message and "sort the file by time" in message
    assert not out.exists()


def test_ids_repeated_across_chunks_are_refused(scoring_project):
    frame = batch(scoring_project, 300)
    later = frame.iloc[:120].assign(timestamp=frame["timestamp"].iloc[:120] + pd.Timedelta("9D"))
    source = scoring_project / "repeated.parquet"
    pd.concat([frame, later], ignore_index=True).to_parquet(source)

    with pytest.raises(DataValidationError) as caught:
        score(
            scoring_project,
            input_path=source,
            output_path=scoring_project / "s.parquet",
            chunk_rows=300,
        )
    message = str(caught.value)
    assert "column 'transaction_id'" in message and "'transaction id is unique'" in message
    assert "broken by 120 rows (ids seen in an earlier chunk)" in message


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series([7, -3, 10**15, 42], dtype="int64"),
        pd.Series(["tx-7", "tx-3", "TX-7", "42"]),
    ],
    ids=["integers", "text"],
)
def test_seen_ids_counts_only_ids_of_earlier_chunks(ids):
    seen = SeenIds()
    assert seen.count_repeated(ids) == 0
    seen.add(ids.iloc[:2])
    seen.add(ids.iloc[2:3])

    assert seen.count_repeated(ids) == 3
    assert seen.count_repeated(ids.iloc[3:]) == 0
    assert seen.count_repeated(pd.concat([ids.iloc[1:2]] * 4)) == 4


def test_one_transaction_scored_with_its_related_context_matches_the_batch(scoring_project):
    model = ProductionModel.load(scoring_project)
    known = known_transactions(scoring_project, model.reach_days)
    frame = batch(scoring_project, 400)
    whole = model.scores(frame, known)

    picked = [0, 57, 199, 398]
    alone = []
    for i in picked:
        # Scored one at a time, each transaction knows the batch's earlier rows too.
        past = pd.concat([known, frame.iloc[:i]], ignore_index=True)
        one = frame.iloc[[i]]
        alone.append(model.scores(one, related_context(one, past)).iloc[0])
    assert np.allclose(alone, whole.iloc[picked].to_numpy(), rtol=0, atol=1e-12)
    assert len(related_context(frame.iloc[[0]], known)) < len(known) / 10


# ---------------------------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------------------------


def scored_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [11, 12, 13, 14, 15],
            "timestamp": pd.to_datetime(["2026-05-04 10:00"] * 5),
            "customer_id": ["CUST-998877"] * 5,
            "terminal_id": [7, 7, 8, 8, 9],
            "amount": [10.0, 20.0, 30.0, 40.0, 12_000.0],
            "score": [0.2, 0.5, 0.4999, 0.95, 0.99],
            "rules": ["", "", "", "", "AML-01"],
            "rule_reasons": ["", "", "", "", "amount 12,000 at or above 10,000"],
        }
    )


def test_fraud_alerts_exactly_at_or_above_the_threshold():
    alerts = fraud_alerts(scored_rows(), threshold=0.5, high_score=0.95, model_version="v0007")

    assert [a.details["transaction_id"] for a in alerts] == [12, 14, 15]
    assert [a.severity for a in alerts] == ["medium", "high", "high"]
    assert [a.key for a in alerts] == ["fraud:tx:12", "fraud:tx:14", "fraud:tx:15"]
    last = alerts[-1].details
    assert (last["score"], last["threshold"], last["model_version"]) == (0.99, 0.5, "v0007")
    assert last["rules"] == "AML-01"
    assert last["reasons"] == [
        "model score 0.990 at or above threshold 0.500",
        "amount 12,000 at or above 10,000",
    ]
    assert alerts[0].details["reasons"] == ["model score 0.500 at or above threshold 0.500"]
    assert all(a.kind == "fraud" and "CUST" not in a.key for a in alerts)


def test_compliance_alerts_carry_rule_ids_reasons_and_the_model_score():
    fired = pd.DataFrame(
        {
            "transaction_id": [15, 13, 99],
            "rule_id": ["AML-01", "AML-03", "KYC-01"],
            "rule_kind": ["large_transaction", "velocity", "watchlist"],
            "reason": ["amount 12,000 at or above 10,000", "5 in 10 min", "customer listed"],
            "timestamp": pd.to_datetime(["2026-05-04 10:00"] * 3),
            "amount": [12_000.0, 30.0, 1.0],
            "customer_id": ["CUST-998877"] * 3,
            "terminal_id": [9, 8, 1],
        }
    )
    scores = scored_rows().set_index("transaction_id")["score"]

    alerts = compliance_alerts(fired, scores)
    assert [a.key for a in alerts] == [
        "compliance:AML-01:tx:15",
        "compliance:AML-03:tx:13",
        "compliance:KYC-01:tx:99",
    ]
    assert [a.severity for a in alerts] == ["high", "medium", "high"]
    assert [a.details["rule_id"] for a in alerts] == ["AML-01", "AML-03", "KYC-01"]
    assert alerts[0].details["reasons"] == ["amount 12,000 at or above 10,000"]
    assert [a.details["score"] for a in alerts] == [0.99, 0.4999, None]
    assert "AML-03" in alerts[1].title and "velocity" in alerts[1].title
    assert all(a.kind == "compliance" and "CUST" not in a.key for a in alerts)


def test_alert_keys_of_a_real_batch_name_only_rule_and_transaction(scoring_project):
    result = score(scoring_project, output_path=scoring_project / "s.parquet")
    kinds = {a.kind for a in result.alerts}
    assert kinds == {"fraud", "compliance"}

    for alert in result.alerts:
        match = KEY.match(alert.key)
        assert match, alert.key
        assert int(match.group(2)) == alert.details["transaction_id"]
    assert len({a.key for a in result.alerts}) == len(result.alerts)

    scored = pd.read_parquet(result.output_path)
    flagged = scored.loc[scored["score"] >= result.threshold, "transaction_id"]
    fraud = [a for a in result.alerts if a.kind == "fraud"]
    assert [a.details["transaction_id"] for a in fraud] == flagged.tolist()
    assert result.fraud_alerts == len(fraud) > 0
    high = {a.details["transaction_id"] for a in fraud if a.severity == "high"}
    assert high == set(scored.loc[scored["score"] >= 0.95, "transaction_id"])


def test_alert_precision_recall_on_a_hand_made_example():
    ids = [1, 2, 3, 4, 5, 6]
    scores = pd.DataFrame({"transaction_id": ids, "score": [0.9, 0.8, 0.7, 0.3, 0.2, 0.6]})
    labels = pd.DataFrame({"transaction_id": [*ids[:5], 7], "label": [1, 0, 1, 1, 0, 1]})

    # Labelled and scored: 1-5. Alerted at 0.7: 1, 2, 3; frauds 1, 3, 4; caught 1 and 3.
    quality = alert_precision_recall(scores, labels, threshold=0.7)
    assert quality == {
        "labelled_rows": 5,
        "frauds": 3,
        "fraud_alerts": 3,
        "precision": 0.6667,
        "recall": 0.6667,
    }
    assert alert_precision_recall(scores, labels, threshold=0.95)["precision"] == 0.0
    assert alert_precision_recall(scores, labels.assign(label=0), threshold=0.7) == {}


# ---------------------------------------------------------------------------------------------
# The audited scoring run
# ---------------------------------------------------------------------------------------------


def run_scoring(root, **changes) -> dict:
    settings = params(root)
    arguments = dict(
        rules_params=settings["rules"],
        watchlist_path=settings["score"]["watchlist"],
        outbox=settings["alerts"]["outbox"],
        audit_path=settings["audit_log"],
        progress=False,
    )
    return score_and_alert(root, **{**arguments, **changes})


def events(root) -> pd.Series:
    return pd.Series([e["event"] for e in AuditLog(root / params(root)["audit_log"]).entries()])


def test_score_and_alert_records_alerts_audit_and_report_once(scoring_project):
    root = scoring_project
    outbox = Outbox(root / params(root)["alerts"]["outbox"])
    before = events(root).value_counts()

    run = run_scoring(root)
    alerts = run["result"].alerts
    assert [a.key for a in outbox.alerts()] == [a.key for a in alerts]
    assert run["alerts_by_kind"] == pd.Series([a.kind for a in alerts]).value_counts().to_dict()
    assert run["delivery"] == {} and run["delivery_report"].added == len(alerts)

    added = events(root).value_counts().sub(before, fill_value=0)
    assert added["transactions_scored"] == 1
    assert added["rule_fired"] == len(run["rules_fired"]) > 0
    assert added["alert_created"] == len(alerts)
    entries = AuditLog(root / params(root)["audit_log"]).entries()
    scored = next(e for e in entries if e["event"] == "transactions_scored")
    assert scored["details"]["rows"] == run["rows"] == len(batch(root))
    assert scored["details"]["model_version"] == Registry(root).production() == "v0002"
    assert verify(root / params(root)["audit_log"]).ok and run["audit_ok"]
    assert run["audit_head"] == entries[-1]["hash"]
    assert set(run["quality"]) == {
        "labelled_rows",
        "frauds",
        "fraud_alerts",
        "precision",
        "recall",
    }

    report = root / "reports" / "compliance"
    markdown, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert run["run_id"] in markdown and run["run_id"] in page
    assert "Alert quality against the labels" in markdown

    again = run_scoring(root)
    assert again["run_id"] != run["run_id"]
    assert again["delivery_report"].added == 0
    assert len(outbox.alerts()) == len(alerts)
    twice = events(root).value_counts().sub(before, fill_value=0)
    assert (twice["transactions_scored"], twice["alert_created"]) == (2, len(alerts))
    assert verify(root / params(root)["audit_log"]).ok
    assert again["run_id"] in (report / "report.md").read_text()


def test_score_and_alert_scores_the_data_stage_batch_to_its_default_output(scoring_project):
    run = run_scoring(scoring_project)
    scored = pd.read_parquet(scoring_project / "data" / "scored" / "scores.parquet")
    assert len(scored) == run["rows"]
    assert np.all((scored["score"] >= 0) & (scored["score"] <= 1))
    assert run["input_path"] == str(paths.SCORE_BATCH)


class Accepting:
    """aiosmtpd handler that accepts every message and counts them."""

    def __init__(self):
        self.messages = 0

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        return "250 2.0.0 Message accepted"


@pytest.fixture
def smtp_port(monkeypatch):
    """A real SMTP server on 127.0.0.1 and the FRAUDOPS_* settings that reach it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Accepting()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "ALERT_FROM": "fraudops@bank.example",
        "ALERT_TO": "analysts@bank.example",
    }.items():
        monkeypatch.setenv(f"FRAUDOPS_{name}", value)
    yield handler
    controller.stop()


def test_each_sent_alert_is_audited_once_however_fast_the_runs(scoring_project, smtp_port):
    # Outbox times have whole seconds: runs within one second must still audit each send once.
    batch(scoring_project, 300).to_parquet(scoring_project / "batch.parquet")
    arguments = dict(
        input_path=scoring_project / "batch.parquet",
        output_path=scoring_project / "scored.parquet",
    )

    run = run_scoring(scoring_project, **arguments)
    keys = {a.key for a in run["result"].alerts}
    assert run["delivery"]["sent"] == {"email": len(keys)} and run["undelivered"] == {}
    assert smtp_port.messages == run["delivery_report"].messages > 0
    entries = AuditLog(scoring_project / params(scoring_project)["audit_log"]).entries()
    sent = [e["details"]["key"] for e in entries if e["event"] == "alert_sent"]
    assert sorted(sent) == sorted(keys)

    again = run_scoring(scoring_project, **arguments)
    assert again["delivery_report"].messages == 0 and again["undelivered"] == {}
    entries = AuditLog(scoring_project / params(scoring_project)["audit_log"]).entries()
    resent = [e["details"]["key"] for e in entries if e["event"] == "alert_sent"]
    assert sorted(resent) == sorted(sent)
