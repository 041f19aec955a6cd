"""End to end: `dvc repro` on a small profile in a scratch copy of the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scratch import copy_project, update_params

from fraudops.simulate import SimulationConfig, simulate_transactions

SMALL_PROFILE = {
    "simulator.n_customers": 300,
    "simulator.n_terminals": 150,
    "simulator.history_days": 42,
    "simulator.new_days": 14,
    "simulator.score_days": 7,
    "split.train_days": 21,
    "split.delay_days": 7,
    "split.test_days": 14,
    "retrain.eval_days": 7,
    "retrain.delay_days": 3,
    "model.hist_gradient_boosting.max_iter": 60,
    "evaluate.top_k": 10,
    "evaluate.alert_budget": 10,
    # Two weekly folds after the 7-day delay and 21 training days fill the 42-day history.
    "evaluate.prequential_folds": 2,
}
STAGES = ("data", "preprocess", "train", "retrain", "evaluate", "monitor", "score")


def dvc(project: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run dvc in ``project`` with this environment's tools (papermill among them) on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        [os.path.join(bin_dir, "dvc"), *arguments],
        cwd=project,
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
    )
    if check:
        assert run.returncode == 0, f"dvc {' '.join(arguments)}:\n{run.stdout}\n{run.stderr}"
    return run


def stages_run(run: subprocess.CompletedProcess) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in run.stdout]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("pipeline") / "project")
    update_params(root, SMALL_PROFILE)
    dvc(root, "remote", "modify", "--local", "local", "url", str(root.parent / "remote"))
    first = dvc(root, "repro")
    assert set(stages_run(first)) == set(STAGES)
    return root


def test_repro_writes_model_metrics_plots_and_executed_notebooks(project):
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert 0.5 < metrics["roc_auc"] <= 1 and 0 < metrics["average_precision"] <= 1
    assert metrics["model_type"] == "hist_gradient_boosting"
    files = ["models/model.skops", "models/model.json", "models/threshold.json"]
    files += ["models/production/model.skops", "reports/retrain.json", "reports/drift.json"]
    files += ["data/scored/scores.parquet", "reports/compliance/report.md"]
    for name in files:
        assert (project / name).is_file()
    for name in (
        "01_data",
        "02_preprocess",
        "03_train",
        "05_evaluate",
        "04_retrain",
        "06_monitor",
        "07_score",
    ):
        assert (project / "reports" / f"{name}.ipynb").is_file()
    assert set(metrics["prequential"]) == {"roc_auc", "average_precision", "card_precision_at_10"}
    assert 0 < metrics["prequential"]["average_precision"]["mean"] <= 1
    assert len(pd.read_csv(project / "reports/plots/prequential.csv")) == 2
    assert (project / "reports/figures/evaluate/prequential.png").is_file()
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    assert shown  # dvc reads the declared metrics file
    assert "prequential.average_precision.mean" in dvc(project, "metrics", "show").stdout
    plots = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert {"roc", "precision_recall", "confusion", "importances"} <= set(plots["data"])
    assert not plots.get("errors")


def test_repro_ends_with_alerts_in_the_outbox_a_report_and_a_verified_audit_log(project):
    from fraudops.alerts import Outbox
    from fraudops.audit import verify

    kinds = {alert.kind for alert in Outbox(project / "reports/alerts/outbox.jsonl").alerts()}
    assert "fraud" in kinds
    result = verify(project / "reports/audit/audit.jsonl")
    assert result.ok and result.entries > 0, result.reason
    lines = (project / "reports/audit/audit.jsonl").read_text().splitlines()
    events = {json.loads(line)["event"] for line in lines}
    assert {"model_promoted", "transactions_scored", "alert_created"} <= events
    report = (project / "reports/compliance/report.md").read_text()
    assert "Alerts by kind" in report and "chain intact" in report


def test_second_repro_does_nothing(project):
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout
    again = dvc(project, "repro")
    assert stages_run(again) == []


def test_changing_a_model_parameter_reruns_only_the_stages_after_train(project):
    run = dvc(project, "exp", "run", "-S", "model.hist_gradient_boosting.learning_rate=0.07")
    ran = set(stages_run(run))
    # monitor and score rerun only if the retrain decision changed the production model
    assert {"train", "retrain", "evaluate"} <= ran
    assert not ran & {"data", "preprocess"}
    table = dvc(project, "exp", "show", "--json").stdout
    assert "learning_rate" in table and "average_precision" in table
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout


def test_turning_the_prequential_evaluation_off_reruns_only_evaluate(project):
    run = dvc(project, "exp", "run", "-S", "evaluate.prequential_folds=0")
    assert stages_run(run) == ["evaluate"]
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert "prequential" not in metrics and "average_precision" in metrics
    assert not (project / "reports/plots/prequential.csv").exists()
    assert not (project / "reports/figures/evaluate/prequential.png").exists()
    executed = (project / "reports/05_evaluate.ipynb").read_text()
    assert "Prequential evaluation is off (evaluate.prequential_folds is 0)" in executed
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout


def test_push_then_pull_restores_data_and_model(project):
    dvc(project, "push")
    for name in ("data/raw/history.parquet", "models/model.skops"):
        (project / name).unlink()
    dvc(project, "pull")
    assert (project / "data/raw/history.parquet").is_file()
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout


def test_bad_input_fails_the_stage_naming_file_column_rule_and_rows(project):
    frame = simulate_transactions(
        SimulationConfig(n_customers=50, history_days=10), progress=False
    )
    frame.loc[frame.index[:3], "amount"] = -5.0
    bad = project / "data/external/bad_history.csv"
    frame.drop(columns=["period"]).to_csv(bad, index=False)
    update_params(
        project, {"data.source": "csv", "data.history_path": str(bad.relative_to(project))}
    )

    run = dvc(project, "repro", "data", check=False)

    assert run.returncode != 0
    message = run.stdout + run.stderr
    assert "data/external/bad_history.csv" in message
    assert "column 'amount'" in message and "amount is not negative" in message
    assert "broken by 3 rows" in message
    leftovers = list((project / "data/raw").glob("*.parquet*")) + list(
        (project / "data/raw").glob(".*.tmp")
    )
    assert leftovers == [], "a failed stage leaves no partial output"
    assert pd.read_csv(bad)["amount"].lt(0).sum() == 3  # the input itself is untouched
