"""Tests of the evaluation: card precision@k, threshold policies, metrics and the stage."""

from __future__ import annotations

import json
import logging
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fraudops import paths
from fraudops.evaluation import (
    card_precision_at_k,
    choose_threshold,
    curves,
    evaluate_model,
    evaluate_scores,
    known_compromised_cards,
    metrics_at,
    plot_prequential,
    prequential,
    prequential_evaluation,
    recall_by_kind,
    thin,
    window_days,
)
from fraudops.model import train_model


def _two_days() -> tuple[pd.DataFrame, pd.Series]:
    rows = [
        # day, card, score, label
        ("2026-01-05 09:00", "A", 0.90, 0),
        ("2026-01-05 10:00", "A", 0.20, 1),  # A is a frauded card, ranked by its 0.90
        ("2026-01-05 11:00", "B", 0.80, 0),
        ("2026-01-05 12:00", "C", 0.70, 1),
        ("2026-01-06 09:00", "D", 0.95, 1),
        ("2026-01-06 10:00", "E", 0.90, 1),
        ("2026-01-06 11:00", "F", 0.60, 0),
        ("2026-01-06 12:00", "A", 0.10, 0),
    ]
    frame = pd.DataFrame(rows, columns=["timestamp", "customer_id", "score", "label"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["transaction_id"] = range(len(frame))
    return frame, frame.pop("score")


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, 1.0), (2, (1 / 2 + 2 / 2) / 2), (3, (2 / 3 + 2 / 3) / 2), (4, (2 / 4 + 2 / 4) / 2)],
)
def test_card_precision_at_k_on_two_days(k, expected) -> None:
    frame, scores = _two_days()
    assert card_precision_at_k(frame, scores, k) == pytest.approx(expected)


def test_card_precision_without_cards_counts_each_transaction() -> None:
    frame, scores = _two_days()
    # Day one's top two transactions are A at 0.90 (genuine) and B (genuine).
    without_cards = frame.drop(columns="customer_id")
    assert card_precision_at_k(without_cards, scores, 2) == pytest.approx((0 + 1) / 2)


def _with_known_frauds() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    rows = [
        # time, card, score, label
        ("2026-01-05 09:00", "A", 0.90, 1),  # A was frauded in training already
        ("2026-01-05 10:00", "B", 0.80, 0),
        ("2026-01-05 11:00", "C", 0.70, 1),  # C's fraud is known from 2026-01-06 at a 1-day delay
        ("2026-01-06 09:00", "C", 0.99, 0),
        ("2026-01-06 10:00", "D", 0.95, 1),
    ]
    test = pd.DataFrame(rows, columns=["timestamp", "customer_id", "score", "label"])
    test["timestamp"] = pd.to_datetime(test["timestamp"])
    test["transaction_id"] = range(len(test))
    train = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2025-12-20 08:00", "2025-12-21 08:00"]),
            "customer_id": ["A", "F"],
            "label": [1, 0],
            "transaction_id": [100, 101],
        }
    )
    return test, train, test.pop("score")


def test_known_compromised_cards_come_from_training_and_delayed_test_labels() -> None:
    test, train, _ = _with_known_frauds()
    known = known_compromised_cards(train, test, delay_days=1)
    assert known.to_dict() == {
        "A": pd.Timestamp("2025-12-20"),
        "C": pd.Timestamp("2026-01-06"),
        "D": pd.Timestamp("2026-01-07"),
    }
    assert known_compromised_cards(train.drop(columns="customer_id"), test, 1).empty


@pytest.mark.parametrize(
    ("delay_days", "expected"),
    [
        (None, (1 + 0) / 2),  # every card ranked: A on day one, C's genuine 0.99 on day two
        (2, (0 + 0) / 2),  # A left out; C's fraud not known yet on day two
        (1, (0 + 1) / 2),  # A left out on day one, C on day two: D comes first
    ],
)
def test_card_precision_leaves_out_known_compromised_cards(delay_days, expected) -> None:
    test, train, scores = _with_known_frauds()
    known = None if delay_days is None else known_compromised_cards(train, test, delay_days)
    assert card_precision_at_k(test, scores, 1, known) == pytest.approx(expected)


def test_evaluate_scores_reports_the_protocols_card_precision_with_a_training_frame() -> None:
    test, train, scores = _with_known_frauds()
    threshold = {"threshold": 0.9}
    plain = evaluate_scores(test, scores, 1, threshold)
    protocol = evaluate_scores(test, scores, 1, threshold, train_frame=train, delay_days=2)

    assert "card_precision_at_1_all_cards" not in plain
    assert plain["card_precision_at_1"] == pytest.approx(0.5)
    assert protocol["card_precision_at_1"] == pytest.approx(0.0)
    assert protocol["card_precision_at_1_all_cards"] == plain["card_precision_at_1"]
    assert protocol["average_precision"] == plain["average_precision"]


def test_prequential_gives_one_row_per_consecutive_week(featured) -> None:
    frame, feature_set, _ = featured
    seen = []

    def fit_and_score(train: pd.DataFrame, test: pd.DataFrame) -> pd.Series:
        seen.append((train["timestamp"].max(), test["timestamp"].min(), test["timestamp"].max()))
        # A fixed rule instead of a model: bigger amounts than the card's usual are riskier.
        return test["card_amount_ratio"] + 0.01 * test["amount"]

    result = prequential(
        frame, fit_and_score, train_days=14, delay_days=3, test_days=7, folds=3, top_k=5
    )
    folds, summary = result["folds"], result["summary"]

    assert list(folds["fold"]) == [0, 1, 2]
    assert (folds["test_start"].diff().dropna() == pd.Timedelta(days=7)).all()
    assert folds["test_end"].iloc[-1] == frame["timestamp"].max().normalize() + pd.Timedelta(
        1, "D"
    )
    for (train_last, test_first, test_last), start, end in zip(
        seen, folds["test_start"], folds["test_end"], strict=True
    ):
        assert train_last < start - pd.Timedelta(days=3) <= test_first
        assert start <= test_first and test_last < end
    assert folds["roc_auc"].between(0.5, 1.0).all()
    assert summary.loc["average_precision", "mean"] == pytest.approx(
        folds["average_precision"].mean()
    )
    assert summary.loc["roc_auc", "std"] == pytest.approx(folds["roc_auc"].std())
    assert list(summary.index) == ["roc_auc", "average_precision", "card_precision_at_5"]


def test_prequential_refuses_a_fold_without_fraud(featured) -> None:
    frame = featured[0]
    # No fraud before the last five days: with two folds, the older one trains on none.
    recent = frame["timestamp"] >= frame["timestamp"].max() - pd.Timedelta(days=5)
    frame = frame.assign(label=frame["label"].where(recent, 0))

    def score(train: pd.DataFrame, test: pd.DataFrame) -> pd.Series:
        return test["amount"]

    prequential(frame, score, train_days=7, delay_days=0, test_days=3, folds=1)
    with pytest.raises(ValueError, match="fold 0's training window .* needs both classes"):
        prequential(frame, score, train_days=7, delay_days=0, test_days=3, folds=2)


# Eight rows over two days; two rows tie at 0.8. Cuts fall only after 0.9, 0.8 (both), 0.7, ...
SCORES = pd.Series([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
LABELS = pd.Series([1, 1, 0, 1, 0, 0, 1, 0])


@pytest.mark.parametrize(
    ("budget", "threshold"),
    [
        (1, 0.9),  # two alerts allowed, but the top two would split the 0.8 tie
        (2, 0.7),  # four alerts
        (3, 0.5),  # six alerts
        (4, 0.3),  # everything
    ],
)
def test_alert_budget_threshold(budget, threshold) -> None:
    chosen = choose_threshold(SCORES, LABELS, days=2, policy="alert_budget", alert_budget=budget)
    assert chosen == {
        "policy": "alert_budget",
        "alert_budget_per_day": budget,
        "threshold": threshold,
    }
    assert metrics_at(SCORES, LABELS, threshold, days=2)["alerts_per_day"] <= budget


def test_alert_budget_of_zero_raises_no_alert() -> None:
    chosen = choose_threshold(SCORES, LABELS, days=2, policy="alert_budget", alert_budget=0)
    assert chosen["threshold"] > SCORES.max()
    assert metrics_at(SCORES, LABELS, chosen["threshold"], days=2)["alerts_per_day"] == 0


@pytest.mark.parametrize("budget", [1, 5, 20, 60])
def test_alert_budget_never_exceeds_budget_nor_splits_ties(budget) -> None:
    rng = np.random.default_rng(budget)
    scores = pd.Series(rng.random(2_000).round(2))  # many ties
    labels = pd.Series((rng.random(2_000) < 0.05).astype(int))
    chosen = choose_threshold(scores, labels, days=10, policy="alert_budget", alert_budget=budget)
    alerts = int((scores >= chosen["threshold"]).sum())

    assert alerts <= budget * 10
    # The next lower score would have broken the budget: the cut is as low as it may go.
    lower = scores[scores < chosen["threshold"]].max()
    assert int((scores >= lower).sum()) > budget * 10


@pytest.mark.parametrize(
    ("target", "threshold"),
    [(1.0, 0.9), (0.75, 0.7), (0.7, 0.7), (0.6, 0.6), (0.55, 0.4), (0.5, 0.3)],
)
def test_target_precision_threshold(target, threshold) -> None:
    chosen = choose_threshold(
        SCORES, LABELS, days=2, policy="target_precision", target_precision=target
    )
    assert chosen == {
        "policy": "target_precision",
        "target_precision": target,
        "threshold": threshold,
    }
    assert metrics_at(SCORES, LABELS, threshold, days=2)["precision"] >= target


def test_unreachable_target_precision_raises_no_alert() -> None:
    labels = pd.Series([0, 1, 1, 1, 1, 1, 1, 1])
    chosen = choose_threshold(
        SCORES, labels, days=2, policy="target_precision", target_precision=0.99
    )
    assert chosen["threshold"] > SCORES.max()


@pytest.mark.parametrize(
    ("cost_fp", "cost_fn", "threshold"),
    [
        (5.0, 100.0, 0.4),  # cheap reviews: catch all four frauds
        (60.0, 100.0, 0.7),  # dear reviews: stop after three frauds for four alerts
        (1000.0, 1.0, 0.9),  # hardly worth alerting: the best single cut is the top score
    ],
)
def test_min_cost_threshold(cost_fp, cost_fn, threshold) -> None:
    chosen = choose_threshold(
        SCORES,
        LABELS,
        days=2,
        policy="min_cost",
        cost_false_positive=cost_fp,
        cost_false_negative=cost_fn,
    )
    assert chosen == {
        "policy": "min_cost",
        "cost_false_positive": cost_fp,
        "cost_false_negative": cost_fn,
        "threshold": threshold,
    }


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown evaluate.threshold_policy 'guess'"):
        choose_threshold(SCORES, LABELS, days=2, policy="guess")


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (0.7, {"precision": 3 / 4, "recall": 3 / 4, "alerts_per_day": 2.0}),
        (0.8, {"precision": 2 / 3, "recall": 2 / 4, "alerts_per_day": 1.5}),
        (0.3, {"precision": 4 / 8, "recall": 4 / 4, "alerts_per_day": 4.0}),
        (0.95, {"precision": 0.0, "recall": 0.0, "alerts_per_day": 0.0}),
    ],
)
def test_metrics_at(threshold, expected) -> None:
    assert metrics_at(SCORES, LABELS, threshold, days=2) == pytest.approx(expected)


def test_recall_by_kind_counts_caught_frauds_per_kind() -> None:
    frame = pd.DataFrame(
        {
            "label": [1, 1, 1, 0, 1, 0],
            "fraud_kind": ["stolen_card", "stolen_card", "card_testing", "none", "large", "none"],
        }
    )
    scores = pd.Series([0.9, 0.2, 0.6, 0.99, 0.1, 0.0])
    table = recall_by_kind(frame, scores, threshold=0.5).set_index("fraud_kind")

    assert sorted(table.index) == ["card_testing", "large", "stolen_card"]
    assert table.loc["stolen_card", "frauds"] == 2
    assert table.loc["stolen_card", "caught"] == 1
    assert table["recall"].to_dict() == {"card_testing": 1.0, "large": 0.0, "stolen_card": 0.5}


def test_recall_by_kind_without_kinds_is_empty() -> None:
    table = recall_by_kind(pd.DataFrame({"label": [1, 0]}), pd.Series([0.9, 0.1]), 0.5)
    assert table.empty
    assert list(table.columns) == ["fraud_kind", "frauds", "caught", "recall"]


@pytest.mark.parametrize(("rows", "points"), [(1_000, 10), (997, 500), (5_001, 500), (3, 2)])
def test_thin_keeps_first_and_last_points(rows, points) -> None:
    frame = pd.DataFrame({"x": np.arange(rows) * 2.0}, index=np.arange(rows) + 7)
    thinned = thin(frame, points)

    assert thinned["x"].iloc[0] == 0.0
    assert thinned["x"].iloc[-1] == (rows - 1) * 2.0
    assert points <= len(thinned) <= points + 1
    assert thinned["x"].is_monotonic_increasing
    assert list(thinned.index) == list(range(len(thinned)))


def test_thin_leaves_short_curves_whole() -> None:
    frame = pd.DataFrame({"x": [3.0, 1.0, 2.0]}, index=[5, 6, 9])
    pd.testing.assert_frame_equal(thin(frame, 3), frame.reset_index(drop=True))


def test_curves_run_from_corner_to_corner() -> None:
    rng = np.random.default_rng(0)
    labels = pd.Series((rng.random(3_000) < 0.1).astype(int))
    scores = pd.Series(rng.random(3_000) + 0.3 * labels)
    roc = curves(labels, scores)["roc"]
    pr = curves(labels, scores)["precision_recall"]

    assert len(roc) <= 501
    assert tuple(roc.iloc[0]) == (0.0, 0.0)
    assert tuple(roc.iloc[-1]) == (1.0, 1.0)
    assert pr["recall"].iloc[0] == 1.0
    assert pr["recall"].iloc[-1] == 0.0


def test_window_days_counts_calendar_days() -> None:
    frame, _ = _two_days()
    assert window_days(frame) == 2.0
    assert window_days(frame.head(1)) == 1.0


# The evaluate stage's settings for the small project.
EVALUATE = dict(
    top_k=5,
    threshold_policy="alert_budget",
    alert_budget=4,
    target_precision=0.5,
    cost_false_positive=5.0,
    cost_false_negative=100.0,
    seed=1,
)


def test_evaluate_model_writes_metrics_threshold_and_plot_data(project) -> None:
    card = train_model(
        project, model_type="logistic_regression", hyperparameters={"max_iter": 500}, seed=1
    )
    result = evaluate_model(project, **EVALUATE)
    metrics = json.loads((project / paths.METRICS).read_text())
    threshold = json.loads((project / paths.THRESHOLD).read_text())
    test = pd.read_parquet(project / paths.TEST)
    plots = project / paths.PLOTS_DIR

    assert metrics["model_type"] == "logistic_regression"
    assert metrics["test_rows"] == len(test)
    assert metrics["test_frauds"] == int(test["label"].sum())
    assert metrics["roc_auc"] == pytest.approx(result["metrics"]["roc_auc"], abs=1e-6)
    assert 0.7 < metrics["roc_auc"] <= 1.0
    assert 0.0 <= metrics["card_precision_at_5"] <= 1.0
    assert metrics["alerts_per_day"] <= 4
    assert threshold["policy"] == "alert_budget"
    assert threshold["model_sha256"] == card["sha256"]
    assert threshold["threshold"] == pytest.approx(metrics["threshold"], abs=1e-6)
    assert sorted(p.name for p in plots.iterdir()) == [
        "confusion.csv",
        "importances.csv",
        "precision_recall.csv",
        "roc.csv",
    ]
    confusion = pd.read_csv(plots / "confusion.csv")
    assert len(confusion) == len(test)
    assert confusion["predicted"].sum() == round(metrics["alerts_per_day"] * window_days(test))
    importances = pd.read_csv(plots / "importances.csv")
    assert set(importances["feature"]) == set(card["features"]["numeric"]) | set(
        card["features"]["categorical"]
    )
    assert not list(project.rglob("*.tmp"))


def test_evaluate_model_names_the_stage_that_makes_missing_inputs(project) -> None:
    with pytest.raises(FileNotFoundError, match="models/model.skops is missing; the 'train'"):
        evaluate_model(project, **{**EVALUATE, "threshold_policy": "min_cost"})


# ---------------------------------------------------------------------------------------------
# The prequential evaluation of the evaluate stage
# ---------------------------------------------------------------------------------------------

# Three weekly folds that fit in the 40-day history of the small projects: 3 x 7 + 3 + 14 days.
PREQUENTIAL = {
    "folds": 3,
    "test_days": 7,
    "train_days": 14,
    "delay_days": 3,
    "top_k": 5,
    "progress": False,
}
PREQUENTIAL_METRICS = ["roc_auc", "average_precision", "card_precision_at_5"]


@pytest.fixture(scope="module")
def evaluated_template(trained_template, tmp_path_factory):
    """The trained small project after evaluate_model; copy it, never change it."""
    root = shutil.copytree(trained_template, tmp_path_factory.mktemp("evaluated") / "project")
    evaluate_model(root, **EVALUATE)
    return root


@pytest.fixture()
def evaluated_project(evaluated_template, tmp_path):
    return shutil.copytree(evaluated_template, tmp_path / "project")


def _messages(caplog, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_prequential_evaluation_tests_consecutive_windows_after_the_delay(
    evaluated_project, caplog
) -> None:
    root = evaluated_project
    with caplog.at_level(logging.INFO, logger="fraudops"):
        result = prequential_evaluation(root, **PREQUENTIAL)
    folds = result["folds"]
    history = pd.read_parquet(root / paths.HISTORY)
    stamps = history["timestamp"]

    assert list(folds["fold"]) == [0, 1, 2]
    # Weeks one after the other, none overlapping, the last ending with the history's last day.
    assert (folds["test_end"] - folds["test_start"] == pd.Timedelta(days=7)).all()
    assert list(folds["test_start"].iloc[1:]) == list(folds["test_end"].iloc[:-1])
    assert folds["test_end"].iloc[-1] == stamps.max().normalize() + pd.Timedelta(days=1)
    # Each fold trains on the 14 days that end the 3-day delay before its test window.
    assert (folds["test_start"] - folds["train_end"] == pd.Timedelta(days=3)).all()
    assert (folds["train_end"] - folds["train_start"] == pd.Timedelta(days=14)).all()
    for fold in folds.itertuples():
        in_train = (stamps >= fold.train_start) & (stamps < fold.train_end)
        in_test = (stamps >= fold.test_start) & (stamps < fold.test_end)
        assert (fold.train_rows, fold.test_rows) == (in_train.sum(), in_test.sum())
        assert fold.test_frauds == history.loc[in_test, "label"].sum() > 0
    # A fresh model of the card's type was fitted on exactly each fold's training rows.
    fitted = [message.split(" in ")[0] for message in _messages(caplog, "fitted ")]
    assert fitted == [f"fitted RandomForestClassifier on {n:,} rows" for n in folds["train_rows"]]
    logged = _messages(caplog, "prequential fold ")
    assert [line.split(":")[0] for line in logged] == [
        f"prequential fold {i}/3" for i in (1, 2, 3)
    ]
    for line, value in zip(logged, folds["average_precision"], strict=True):
        assert f"average precision {value:.4f}" in line


def test_prequential_evaluation_summary_goes_into_metrics_json(evaluated_project) -> None:
    root = evaluated_project
    before = json.loads((root / paths.METRICS).read_text())

    result = prequential_evaluation(root, **PREQUENTIAL)

    folds, summary = result["folds"], result["summary"]
    assert list(summary.index) == PREQUENTIAL_METRICS
    after = json.loads((root / paths.METRICS).read_text())
    assert {key: value for key, value in after.items() if key != "prequential"} == before
    assert sorted(after["prequential"]) == sorted(PREQUENTIAL_METRICS)
    for metric in PREQUENTIAL_METRICS:
        assert summary.loc[metric, "mean"] == pytest.approx(folds[metric].mean())
        assert summary.loc[metric, "std"] == pytest.approx(folds[metric].std())
        assert after["prequential"][metric] == {
            "mean": pytest.approx(folds[metric].mean(), abs=1e-6),
            "std": pytest.approx(folds[metric].std(), abs=1e-6),
        }
    written = pd.read_csv(root / paths.PREQUENTIAL, parse_dates=["test_start", "test_end"])
    assert list(written["test_start"]) == list(folds["test_start"])
    assert written["average_precision"].to_numpy() == pytest.approx(folds["average_precision"])
    assert not list(root.rglob("*.tmp"))


def test_one_prequential_fold_has_no_standard_deviation_and_writes_null(
    evaluated_project,
) -> None:
    result = prequential_evaluation(evaluated_project, **{**PREQUENTIAL, "folds": 1})

    assert len(result["folds"]) == 1
    written = json.loads((evaluated_project / paths.METRICS).read_text())["prequential"]
    for metric in PREQUENTIAL_METRICS:
        assert written[metric]["std"] is None
        assert written[metric]["mean"] == pytest.approx(result["folds"][metric].iloc[0], abs=1e-6)


def test_prequential_evaluation_refits_the_model_type_of_the_card(evaluated_project, caplog):
    root = evaluated_project
    card = json.loads((root / paths.MODEL_CARD).read_text())
    card.update(model_type="logistic_regression", hyperparameters={"max_iter": 500})
    (root / paths.MODEL_CARD).write_text(json.dumps(card))

    with caplog.at_level(logging.INFO, logger="fraudops.model"):
        prequential_evaluation(root, **PREQUENTIAL)

    fitted = [message.split(" on ")[0] for message in _messages(caplog, "fitted ")]
    assert fitted == ["fitted LogisticRegression"] * 3


def test_prequential_evaluation_with_no_folds_writes_nothing(evaluated_project) -> None:
    root = evaluated_project
    files = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}

    assert prequential_evaluation(root, **{**PREQUENTIAL, "folds": 0}) is None

    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == files
    assert "prequential" not in json.loads((root / paths.METRICS).read_text())


def test_prequential_evaluation_refuses_folds_reaching_before_the_history(
    evaluated_project,
) -> None:
    root = evaluated_project
    metrics = (root / paths.METRICS).read_bytes()
    # Four weeks, the delay and 14 training days need 45 days; the history holds 40.
    with pytest.raises(ValueError, match="need transactions from 2025-12-31, but they run from"):
        prequential_evaluation(root, **{**PREQUENTIAL, "folds": 4})
    with pytest.raises(ValueError, match="must be 0 \\(off\\) or more, got -1"):
        prequential_evaluation(root, **{**PREQUENTIAL, "folds": -1})

    assert (root / paths.METRICS).read_bytes() == metrics
    assert not (root / paths.PREQUENTIAL).exists()


def test_prequential_evaluation_needs_the_metrics_of_evaluate_model(trained_project) -> None:
    with pytest.raises(FileNotFoundError, match="metrics.json is missing: .* evaluate_model"):
        prequential_evaluation(trained_project, **PREQUENTIAL)
    assert not (trained_project / paths.PREQUENTIAL).exists()


def test_plot_prequential_draws_each_folds_metrics_and_their_means() -> None:
    folds = pd.DataFrame(
        {
            "test_start": pd.to_datetime(["2026-03-02", "2026-03-09", "2026-03-16"]),
            "average_precision": [0.30, 0.40, 0.50],
            "card_precision_at_5": [0.10, 0.20, 0.60],
        }
    )
    figure = plot_prequential(folds, top_k=5)
    axis = figure.axes[0]

    per_fold = [line for line in axis.get_lines() if line.get_marker() == "o"]
    means = [line for line in axis.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_label() for line in per_fold] == ["average precision", "card precision@5"]
    assert list(per_fold[0].get_ydata()) == [0.30, 0.40, 0.50]
    assert list(per_fold[1].get_ydata()) == [0.10, 0.20, 0.60]
    assert [line.get_ydata()[0] for line in means] == pytest.approx([0.40, 0.30])
    labels = [label.get_text() for label in axis.get_xticklabels()]
    assert labels == ["2026-03-02", "2026-03-09", "2026-03-16"]
    plt.close(figure)
