"""Tests of retraining: the promotion rule, the batch checks, the windows and the retrain stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudops import paths
from fraudops.data import DataValidationError, read_canonical
from fraudops.evaluation import card_precision_at_k, known_compromised_cards
from fraudops.features import FeatureSet
from fraudops.model import build_pipeline, fit, sha256
from fraudops.registry import PRODUCTION_CARD, PRODUCTION_MODEL, REGISTRY_DIR, Registry
from fraudops.retraining import (
    RETRAIN_REPORT,
    PromotionRule,
    decide,
    evaluate_on,
    labels_known_before,
    recall_by_kind_table,
    retrain,
    side_by_side,
    windows,
)

RULE = PromotionRule(metric="average_precision", min_improvement=0.005, max_recall_drop=0.02)


def _metrics(average_precision: float, recall: float) -> dict:
    return {"average_precision": average_precision, "recall_at_threshold": recall}


# ---------------------------------------------------------------------------------------------
# The promotion rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("champion", "challenger", "outcome", "reason_parts"),
    [
        pytest.param(
            _metrics(0.40, 0.60),
            _metrics(0.45, 0.61),
            "promote",
            ["promoted the challenger", "0.4000 -> 0.4500 (+0.0500)", "0.600 -> 0.610"],
            id="better-by-more-than-the-minimum",
        ),
        pytest.param(
            _metrics(0.45, 0.60),
            _metrics(0.40, 0.60),
            "keep",
            ["kept the champion", "0.4500 -> 0.4000 (-0.0500)", "at least +0.005"],
            id="worse",
        ),
        pytest.param(
            _metrics(0.45, 0.60),
            _metrics(0.45, 0.60),
            "keep",
            ["kept the champion", "0.4500 -> 0.4500 (+0.0000)", "at least +0.005"],
            id="equal",
        ),
        pytest.param(
            _metrics(0.40, 0.60),
            _metrics(0.403, 0.60),
            "keep",
            ["kept the champion", "(+0.0030)", "at least +0.005"],
            id="better-by-less-than-the-minimum",
        ),
        pytest.param(
            _metrics(0.40, 0.60),
            _metrics(0.50, 0.50),
            "keep",
            ["kept the champion", "recall at threshold 0.600 -> 0.500", "allowed 0.02"],
            id="better-but-loses-recall",
        ),
        pytest.param(
            _metrics(0.40, 0.60),
            _metrics(0.50, 0.59),
            "promote",
            ["promoted the challenger", "recall at threshold 0.600 -> 0.590"],
            id="better-losing-recall-within-the-allowance",
        ),
        pytest.param(
            _metrics(0.40, 0.60),
            _metrics(float("nan"), 0.60),
            "keep",
            ["challenger's average_precision is not a number"],
            id="challenger-metric-nan",
        ),
        pytest.param(
            _metrics(float("nan"), 0.60),
            _metrics(0.50, 0.60),
            "keep",
            ["champion's average_precision is not a number"],
            id="champion-metric-nan",
        ),
        pytest.param(
            _metrics(0.40, 0.60),
            {"recall_at_threshold": 0.60},
            "keep",
            ["challenger's average_precision is not a number"],
            id="challenger-metric-missing",
        ),
        pytest.param(
            _metrics(0.40, 0.60), None, "keep", ["challenger has no metrics"], id="broken"
        ),
        pytest.param(
            None, _metrics(0.40, 0.60), "promote", ["no model is in production"], id="first"
        ),
    ],
)
def test_decide_applies_the_promotion_rule(champion, challenger, outcome, reason_parts) -> None:
    decision = decide(champion, challenger, RULE)

    assert set(decision) == {"outcome", "reason", "improvement"}
    assert decision["outcome"] == outcome
    for part in reason_parts:
        assert part in decision["reason"]


@pytest.mark.parametrize(
    ("champion", "challenger", "improvement"),
    [
        (_metrics(0.40, 0.60), _metrics(0.45, 0.61), 0.05),
        (_metrics(0.45, 0.60), _metrics(0.40, 0.60), -0.05),
        (_metrics(0.40, 0.60), _metrics(0.50, 0.50), 0.10),
        (_metrics(0.40, 0.60), None, None),
        (None, _metrics(0.40, 0.60), None),
        (_metrics(0.40, 0.60), _metrics(float("nan"), 0.60), None),
    ],
)
def test_decide_reports_the_improvement_where_both_were_measured(
    champion, challenger, improvement
) -> None:
    measured = decide(champion, challenger, RULE)["improvement"]
    if improvement is None:
        assert measured is None
    else:
        assert measured == pytest.approx(improvement)


@pytest.mark.parametrize("metric", ["average_precision", "roc_auc"])
def test_decide_compares_the_rules_metric(metric) -> None:
    champion = {"average_precision": 0.40, "roc_auc": 0.90, "recall_at_threshold": 0.5}
    challenger = {"average_precision": 0.50, "roc_auc": 0.80, "recall_at_threshold": 0.5}
    decision = decide(champion, challenger, PromotionRule(metric=metric))

    assert decision["outcome"] == ("promote" if metric == "average_precision" else "keep")
    assert metric in decision["reason"]


# ---------------------------------------------------------------------------------------------
# Training and evaluation windows
# ---------------------------------------------------------------------------------------------


def _daily(days: int) -> pd.DataFrame:
    stamps = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(days * 4) * 6, unit="h")
    return pd.DataFrame({"timestamp": stamps})


@pytest.mark.parametrize(
    ("window", "train_start"),
    [("all", "2026-01-01 00:00:00"), ("sliding", "2026-01-13 18:00:00")],
)
def test_windows_keep_a_label_delay_before_the_evaluation_days(window, train_start) -> None:
    combined = _daily(30)  # 2026-01-01 to 2026-01-30 18:00, four rows a day
    new_batch_start = pd.Timestamp("2026-01-21")
    train, evaluation, bounds = windows(
        combined, new_batch_start, eval_days=5, delay_days=2, window=window, window_days=10
    )

    assert bounds["eval_start"] == "2026-01-25 18:00:00"
    assert bounds["train_end"] == "2026-01-23 18:00:00"
    assert bounds["train_start"] == train_start
    stamps = combined["timestamp"]
    assert stamps[evaluation].min() == pd.Timestamp("2026-01-25 18:00")
    assert stamps[train].max() < pd.Timestamp(bounds["train_end"])
    assert stamps[train].min() == pd.Timestamp(train_start)
    assert not (train & evaluation).any()


def test_evaluation_never_starts_before_the_new_batch() -> None:
    combined = _daily(30)
    new_batch_start = pd.Timestamp("2026-01-28")
    _, evaluation, bounds = windows(combined, new_batch_start, 14, 2, "all", 60)

    assert bounds["eval_start"] == "2026-01-28 00:00:00"
    assert combined["timestamp"][evaluation].min() == new_batch_start


def test_an_unknown_window_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown retrain.window 'expanding'; use one of all"):
        windows(_daily(10), pd.Timestamp("2026-01-05"), 2, 1, "expanding", 5)


def test_labels_known_before_the_gap_reach_back_past_a_sliding_window() -> None:
    combined = _daily(30).assign(customer_id="A", label=0)
    _, evaluation, bounds = windows(combined, pd.Timestamp("2026-01-21"), 5, 2, "sliding", 10)
    train_end = pd.Timestamp(bounds["train_end"])

    known = labels_known_before(combined, train_end)

    assert list(known.columns) == ["customer_id", "timestamp", "label"]
    # Every row before the gap, from the first day: older than the sliding window's start.
    assert known["timestamp"].min() == combined["timestamp"].min()
    assert known["timestamp"].max() < train_end
    assert len(known) == int((combined["timestamp"] < train_end).sum())
    assert not known.index.isin(combined.index[evaluation]).any()
    assert labels_known_before(combined.drop(columns="customer_id"), train_end) is None


# ---------------------------------------------------------------------------------------------
# Card precision@k on the evaluation window
# ---------------------------------------------------------------------------------------------

AMOUNT_ONLY = FeatureSet(("amount",), ())
SETTINGS_AT_1 = {
    "top_k": 1,
    "threshold_policy": "alert_budget",
    "alert_budget": 1,
    "target_precision": 0.5,
    "cost_false_positive": 5,
    "cost_false_negative": 100,
}


def _amount_model():
    """A real logistic pipeline whose score rises with the amount."""
    amounts = np.random.default_rng(0).uniform(1, 1_000, 400)
    train = pd.DataFrame({"amount": amounts, "label": (amounts > 500).astype(int)})
    pipeline = build_pipeline(AMOUNT_ONLY, "logistic_regression", {"max_iter": 1000}, seed=0)
    fit(pipeline, train, AMOUNT_ONLY)
    return pipeline


@pytest.mark.parametrize(
    ("earlier_label", "expected"),
    [
        (1, 0.0),  # A was frauded before the window: left out, genuine B is ranked first
        (0, 1.0),  # A's earlier transaction was genuine: A stays first, and is a hit
    ],
)
def test_evaluate_on_leaves_out_a_card_compromised_before_the_window(
    earlier_label, expected
) -> None:
    rows = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3, 4],
            "customer_id": ["A", "B", "C", "D"],
            "timestamp": pd.to_datetime(["2026-02-10 09:00"] * 4),
            "amount": [900.0, 800.0, 50.0, 30.0],
            "label": [1, 0, 0, 1],
        }
    )
    labelled_before = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "timestamp": pd.to_datetime(["2026-02-01 12:00", "2026-02-02 12:00"]),
            "label": [earlier_label, 0],
        }
    )
    pipeline = _amount_model()

    plain = evaluate_on(pipeline, rows, AMOUNT_ONLY, SETTINGS_AT_1)["metrics"]
    protocol = evaluate_on(pipeline, rows, AMOUNT_ONLY, SETTINGS_AT_1, labelled_before, 2)

    assert plain["card_precision_at_1"] == 1.0
    assert "card_precision_at_1_all_cards" not in plain
    assert protocol["metrics"]["card_precision_at_1"] == expected
    assert protocol["metrics"]["card_precision_at_1_all_cards"] == 1.0
    assert protocol["metrics"]["average_precision"] == plain["average_precision"]


def test_retrain_ranks_cards_without_those_frauded_before_the_gap(
    trained_project, retrain_settings
) -> None:
    root = trained_project
    result = retrain(root, **retrain_settings)

    combined = pd.concat(
        [read_canonical(root, paths.HISTORY), read_canonical(root, paths.NEW_BATCH)],
        ignore_index=True,
    )
    train_end = pd.Timestamp(result["windows"]["train_end"])
    before_gap = combined[combined["timestamp"] < train_end]
    report = _report(root)
    for role in ("champion", "challenger"):
        scores = result[role]["scores"]
        rows = combined.loc[scores.index]
        known = known_compromised_cards(before_gap, rows, retrain_settings["delay_days"])
        frauded_before = set(before_gap.loc[before_gap["label"] == 1, "customer_id"])
        assert frauded_before & set(rows["customer_id"]), "some cards of the window are known"

        metrics = report[role]["metrics"]
        assert metrics["card_precision_at_30"] == pytest.approx(
            card_precision_at_k(rows, scores, 30, known)
        )
        assert metrics["card_precision_at_30_all_cards"] == pytest.approx(
            card_precision_at_k(rows, scores, 30)
        )


# ---------------------------------------------------------------------------------------------
# The retrain stage end to end
# ---------------------------------------------------------------------------------------------


def _report(root: Path) -> dict:
    return json.loads((root / RETRAIN_REPORT).read_text())


def _production_bytes(root: Path) -> bytes:
    return (root / PRODUCTION_MODEL).read_bytes()


def _version_bytes(root: Path, version: str) -> bytes:
    return (root / REGISTRY_DIR / version / "model.skops").read_bytes()


def test_first_retrain_registers_the_first_model_and_a_challenger(retrained_project) -> None:
    root = retrained_project
    registry = Registry(root)
    first, challenger = registry.card("v0001"), registry.card("v0002")

    # v0001 is the train stage's model, byte for byte.
    assert [v["version"] for v in registry.versions()] == ["v0001", "v0002"]
    assert _version_bytes(root, "v0001") == (root / paths.MODEL).read_bytes()
    assert first["sha256"] == json.loads((root / paths.MODEL_CARD).read_text())["sha256"]
    assert first["role"] == "first model"
    assert first["model_type"] == "random_forest"
    assert challenger["role"] == "challenger"
    assert challenger["model_type"] == "logistic_regression"

    # The stump is far worse than the logistic challenger, so the challenger is promoted.
    report = _report(root)
    assert report["decision"]["outcome"] == "promote"
    assert report["decision"]["production"] == "v0002" == registry.production()
    assert report["decision"]["improvement"] > 0.1
    assert report["decision"]["reason"].startswith("promoted the challenger: average_precision")
    assert challenger["decision"]["outcome"] == "promote"
    assert challenger["decision"]["reason"] == report["decision"]["reason"]


def test_retrain_report_holds_both_models_metrics_and_recall_by_kind(retrained_project) -> None:
    report = _report(retrained_project)
    registry = Registry(retrained_project)

    assert set(report) == {"decision", "windows", "champion", "challenger"}
    assert report["champion"]["version"] == "v0001"
    assert report["challenger"]["version"] == "v0002"
    for role in ("champion", "challenger"):
        part = report[role]
        assert 0.0 <= part["metrics"]["average_precision"] <= 1.0
        assert part["metrics"]["test_frauds"] == report["windows"]["eval_frauds"] > 0
        assert part["threshold"] == part["metrics"]["threshold"]
        assert set(part["recall_by_kind"]) <= {
            "card_testing",
            "compromised_terminal",
            "large_amount",
            "stolen_card",
        }
        assert len(part["recall_by_kind"]) >= 3
        assert all(0.0 <= recall <= 1.0 for recall in part["recall_by_kind"].values())
        # The registry's cards carry the metrics measured on the same window.
        assert registry.card(part["version"])["metrics"] == part["metrics"]
    assert report["windows"]["train_rows"] == registry.card("v0002")["training_rows"]


def test_production_folder_holds_the_production_version(retrained_project) -> None:
    root = retrained_project
    version = Registry(root).production()
    card = json.loads((root / PRODUCTION_CARD).read_text())

    assert card["version"] == version
    assert _production_bytes(root) == _version_bytes(root, version)
    assert sha256(root / PRODUCTION_MODEL) == card["sha256"]
    assert (
        (root / paths.MODELS_DIR / "production" / "MODEL_CARD.md")
        .read_text()
        .startswith(f"# Model card: {version}")
    )


@pytest.mark.parametrize(
    ("model_type", "hyperparameters", "failure"),
    [
        ("hist_gradient_boosting", {"max_iter": -1}, "InvalidParameterError: The 'max_iter'"),
        ("gradient_descent_by_hand", {}, "ValueError: unknown model.type"),
    ],
    ids=["bad-hyperparameter", "unknown-model-type"],
)
def test_a_broken_challenger_keeps_the_champion(
    retrained_project, retrain_settings, model_type, hyperparameters, failure
) -> None:
    root = retrained_project
    registry = Registry(root)
    before = _production_bytes(root)

    result = retrain(
        root, **{**retrain_settings, "model_type": model_type, "hyperparameters": hyperparameters}
    )

    decision = _report(root)["decision"]
    assert decision["outcome"] == result["decision"]["outcome"] == "keep"
    assert "the challenger failed to train or score" in decision["reason"]
    assert failure in decision["reason"]
    assert decision["production"] == registry.production() == "v0002"
    assert [v["version"] for v in registry.versions()] == ["v0001", "v0002"]
    assert _production_bytes(root) == before
    assert _report(root)["challenger"]["version"] is None
    # The champion was still measured on the new window.
    assert _report(root)["champion"]["metrics"]["test_frauds"] > 0


def _repeat_history_ids(history: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    batch.loc[batch.index[:5], "transaction_id"] = history["transaction_id"].iloc[-5:].to_numpy()
    return batch


def _move_before_history(history: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    batch.loc[batch.index[-7:], "timestamp"] = history["timestamp"].min()
    return batch


def _both(history: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    return _move_before_history(history, _repeat_history_ids(history, batch))


@pytest.mark.parametrize(
    ("alter", "problems"),
    [
        (
            _repeat_history_ids,
            ["column 'transaction_id': rule 'new ids do not repeat the history' broken by 5 rows"],
        ),
        (
            _move_before_history,
            ["column 'timestamp': rule 'later than the history (which ends 2026-02-13"],
        ),
        (
            _both,
            ["rule 'new ids do not repeat the history' broken by 5 rows", "broken by 7 rows"],
        ),
    ],
    ids=["ids-overlap", "older-timestamps", "both"],
)
def test_a_new_batch_that_is_not_new_is_refused(
    trained_project, retrain_settings, alter, problems
) -> None:
    root = trained_project
    history = pd.read_parquet(root / paths.HISTORY)
    batch = alter(history, pd.read_parquet(root / paths.NEW_BATCH))
    batch.to_parquet(root / paths.NEW_BATCH, index=False)

    with pytest.raises(DataValidationError) as caught:
        retrain(root, **retrain_settings)

    message = str(caught.value)
    assert caught.value.path == str(root / paths.NEW_BATCH)
    assert len(caught.value.problems) == (2 if alter is _both else 1)
    for part in problems:
        assert part in message
    if alter is _move_before_history:
        assert caught.value.problems[0].endswith("broken by 7 rows")
    # Refused before anything was registered or reported.
    assert not (root / REGISTRY_DIR).exists()
    assert not (root / RETRAIN_REPORT).exists()


def test_an_evaluation_window_without_fraud_keeps_the_champion(
    trained_project, retrain_settings
) -> None:
    root = trained_project
    batch = pd.read_parquet(root / paths.NEW_BATCH)
    late = batch["timestamp"] > batch["timestamp"].max() - pd.Timedelta(days=6)
    batch.loc[late, "label"] = 0
    batch.loc[late, "fraud_kind"] = "none"
    batch.to_parquet(root / paths.NEW_BATCH, index=False)

    result = retrain(root, **retrain_settings)

    report = _report(root)
    assert report["decision"]["outcome"] == "keep"
    assert "the evaluation window holds no fraud" in report["decision"]["reason"]
    assert report["windows"]["eval_frauds"] == 0
    assert report["windows"]["new_batch_frauds"] > 0
    assert report["challenger"]["version"] is None
    assert result["challenger"] == {}
    # The train stage's model is production and published; no challenger was registered.
    registry = Registry(root)
    assert registry.production() == "v0001"
    assert [v["version"] for v in registry.versions()] == ["v0001"]
    assert _production_bytes(root) == (root / paths.MODEL).read_bytes()


def test_a_crash_after_training_leaves_production_in_place(
    retrained_project, retrain_settings
) -> None:
    root = retrained_project
    registry = Registry(root)
    before_bytes, before_report = _production_bytes(root), (root / RETRAIN_REPORT).read_bytes()
    # A folder where the trained challenger's file must go makes the stage fail after training.
    blocker = root / paths.MODELS_DIR / "challenger.skops"
    blocker.unlink(missing_ok=True)
    blocker.mkdir()
    (blocker / "keep").write_text("not a model")

    with pytest.raises(OSError):
        retrain(root, **retrain_settings)

    assert registry.production() == "v0002"
    assert _production_bytes(root) == before_bytes
    assert json.loads((root / PRODUCTION_CARD).read_text())["version"] == "v0002"
    assert (root / RETRAIN_REPORT).read_bytes() == before_report
    leftovers = [p.name for p in (root / paths.MODELS_DIR).rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_pinned_model_keeps_a_better_challenger_out_until_unpinned(
    retrained_project, retrain_settings
) -> None:
    root = retrained_project
    registry = Registry(root)
    registry.rollback("v0001")  # back to the weak first model, pinned

    kept = retrain(root, **retrain_settings)

    reason = kept["decision"]["reason"]
    assert kept["decision"]["outcome"] == "keep"
    assert "kept the pinned production model v0001" in reason
    assert "`fraudops registry unpin`" in reason
    assert "without the pin the rule would have promoted the challenger" in reason
    assert kept["decision"]["improvement"] > 0.1
    assert registry.production() == "v0001"
    assert registry.state()["pinned"] is True
    assert registry.card("v0003")["decision"]["outcome"] == "keep"
    assert _production_bytes(root) == _version_bytes(root, "v0001")

    registry.unpin()
    promoted = retrain(root, **retrain_settings)

    assert promoted["decision"]["outcome"] == "promote"
    assert promoted["decision"]["production"] == registry.production() == "v0004"
    assert registry.state()["pinned"] is False
    assert _production_bytes(root) == _version_bytes(root, "v0004")
    # The side-by-side tables name both models of the run.
    assert list(side_by_side(promoted)) == ["champion v0001", "challenger v0004"]
    by_kind = recall_by_kind_table(promoted)
    assert list(by_kind) == ["frauds", "champion v0001", "challenger v0004"]
    assert by_kind["frauds"].sum() == promoted["windows"]["eval_frauds"]
