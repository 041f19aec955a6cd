"""Evaluation: ranking metrics, card precision@k, the decision threshold, the prequential
evaluation, plots and their data."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from tqdm.auto import tqdm

from fraudops import paths
from fraudops.data import (
    CUSTOMER_ID,
    FRAUD_KIND,
    LABEL,
    TIMESTAMP,
    TRANSACTION_ID,
    read_canonical,
)
from fraudops.features import (
    FeatureSet,
    add_features,
    read_feature_set,
    read_feature_settings,
    terminal_settings,
)
from fraudops.io import atomic_path, write_csv_atomic, write_json_atomic
from fraudops.model import build_pipeline, fit, fraud_scores, load_model

logger = logging.getLogger(__name__)

POLICIES = ("alert_budget", "target_precision", "min_cost")
CURVE_POINTS = 500  # curves are thinned to about this many points for plots and dvc plots


def card_precision_at_k(
    frame: pd.DataFrame,
    scores: pd.Series,
    k: int,
    known_compromised: pd.Series | None = None,
) -> float:
    """Mean over days of the share of frauded cards among the day's ``k`` riskiest cards.

    A card's risk on a day is its highest score that day; a card counts as a hit if any of its
    transactions that day was fraud. Without card ids, each transaction counts as a card.

    Args:
        frame: Labelled transactions.
        scores: The model's scores of ``frame``'s rows.
        k: Cards investigators can review per day.
        known_compromised: The day from which each card (the index) is known to be
            compromised, as from :func:`known_compromised_cards`. From that day on the card
            is left out of the ranking: it is blocked already, so reviewing it finds nothing.
    """
    card = frame[CUSTOMER_ID] if CUSTOMER_ID in frame else frame[TRANSACTION_ID]
    daily = pd.DataFrame(
        {
            "day": frame[TIMESTAMP].dt.floor("D"),
            "card": card,
            "score": scores,
            "label": frame[LABEL],
        }
    )
    if known_compromised is not None and len(known_compromised):
        daily = daily[~(daily["card"].map(known_compromised) <= daily["day"])]
    per_card = daily.groupby(["day", "card"], sort=False).agg(
        score=("score", "max"), label=("label", "max")
    )
    top = (
        per_card.sort_values("score", ascending=False, kind="stable").groupby(level="day").head(k)
    )
    return float(top.groupby(level="day")["label"].sum().div(k).mean())


def known_compromised_cards(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame, delay_days: float
) -> pd.Series:
    """The day from which each frauded card is known to be compromised, during the test.

    A fraud in the training rows is known already (the model was trained on its label); a fraud
    in the test rows on day ``D`` becomes known on day ``D + delay_days``, when its label
    arrives. Without card ids there is nothing to remove and the result is empty.

    Returns:
        A Series indexed by card: the first day the card is known to be compromised.
    """
    if CUSTOMER_ID not in train_frame or CUSTOMER_ID not in test_frame:
        return pd.Series(dtype="datetime64[ns]", name="known_from")
    delay = pd.Timedelta(days=delay_days)
    trained, tested = (f[f[LABEL] == 1] for f in (train_frame, test_frame))
    known = pd.concat(
        [
            pd.Series(trained[TIMESTAMP].dt.floor("D").to_numpy(), index=trained[CUSTOMER_ID]),
            pd.Series(
                (tested[TIMESTAMP].dt.floor("D") + delay).to_numpy(), index=tested[CUSTOMER_ID]
            ),
        ]
    )
    return known.groupby(level=0).min().rename("known_from").rename_axis("card")


def choose_threshold(
    scores: pd.Series,
    labels: pd.Series,
    days: float,
    policy: str,
    alert_budget: int = 50,
    target_precision: float = 0.5,
    cost_false_positive: float = 5.0,
    cost_false_negative: float = 100.0,
) -> dict:
    """Pick the decision threshold by a stated policy.

    Policies:
        ``alert_budget``: the lowest threshold that raises at most ``alert_budget`` alerts a
        day on average, for a team that can review that many.
        ``target_precision``: the lowest threshold whose precision reaches ``target_precision``.
        ``min_cost``: the threshold with the lowest ``cost_fp * FP + cost_fn * FN``.

    Returns:
        The threshold, the policy and its settings, and what the threshold gives on these rows.
    """
    order = np.argsort(-scores.to_numpy(), kind="stable")
    ranked, hits = scores.to_numpy()[order], labels.to_numpy()[order]
    true_pos = np.cumsum(hits)
    alerts = np.arange(1, len(ranked) + 1)
    # Only cut between distinct scores: alerting on the top n must not split equal scores.
    last_of_value = np.r_[ranked[1:] != ranked[:-1], True]
    if policy == "alert_budget":
        allowed = last_of_value & (alerts <= alert_budget * days)
        cut = np.flatnonzero(allowed)[-1] if allowed.any() else None
        settings = {"alert_budget_per_day": alert_budget}
    elif policy == "target_precision":
        allowed = last_of_value & (true_pos / alerts >= target_precision)
        cut = np.flatnonzero(allowed)[-1] if allowed.any() else None
        settings = {"target_precision": target_precision}
    elif policy == "min_cost":
        cost = cost_false_positive * (alerts - true_pos) + cost_false_negative * (
            hits.sum() - true_pos
        )
        cost = np.where(last_of_value, cost, np.inf)
        cut = int(np.argmin(cost))
        settings = {
            "cost_false_positive": cost_false_positive,
            "cost_false_negative": cost_false_negative,
        }
    else:
        raise ValueError(
            f"unknown evaluate.threshold_policy {policy!r}; use one of {', '.join(POLICIES)}"
        )
    threshold = float(ranked[cut]) if cut is not None else float(np.nextafter(ranked[0], 1.0))
    return {"policy": policy, **settings, "threshold": threshold}


def metrics_at(scores: pd.Series, labels: pd.Series, threshold: float, days: float) -> dict:
    """Precision, recall and alerts per day when alerting on ``scores >= threshold``."""
    alert = scores >= threshold
    true_pos = int((alert & (labels == 1)).sum())
    return {
        "precision": true_pos / max(int(alert.sum()), 1),
        "recall": true_pos / max(int(labels.sum()), 1),
        "alerts_per_day": float(alert.sum() / days),
    }


def evaluate_scores(
    frame: pd.DataFrame,
    scores: pd.Series,
    top_k: int,
    threshold: dict,
    train_frame: pd.DataFrame | None = None,
    delay_days: float = 7,
) -> dict:
    """The headline metrics of ``scores`` on the labelled rows of ``frame``.

    With ``train_frame``, ``card_precision_at_{k}`` follows the field's protocol: cards known to
    be compromised before a day (from training labels, or from test labels once
    ``delay_days`` have passed) are left out of that day's ranking, and
    ``card_precision_at_{k}_all_cards`` keeps them in. Without it, every card is ranked.
    """
    labels = frame[LABEL]
    days = window_days(frame)
    at_threshold = metrics_at(scores, labels, threshold["threshold"], days)
    card_precision = {f"card_precision_at_{top_k}": card_precision_at_k(frame, scores, top_k)}
    if train_frame is not None:
        known = known_compromised_cards(train_frame, frame, delay_days)
        card_precision = {
            f"card_precision_at_{top_k}": card_precision_at_k(frame, scores, top_k, known),
            f"card_precision_at_{top_k}_all_cards": card_precision[f"card_precision_at_{top_k}"],
        }
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "average_precision": float(average_precision_score(labels, scores)),
        **card_precision,
        "threshold": threshold["threshold"],
        "precision_at_threshold": at_threshold["precision"],
        "recall_at_threshold": at_threshold["recall"],
        "alerts_per_day": at_threshold["alerts_per_day"],
        "test_rows": len(frame),
        "test_frauds": int(labels.sum()),
    }


def prequential(
    frame: pd.DataFrame,
    fit_and_score,
    train_days: float,
    delay_days: float,
    test_days: float,
    folds: int,
    top_k: int = 30,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Prequential evaluation: the out-of-time split repeated over consecutive test windows.

    Fold ``i`` (0 the oldest) tests on ``test_days`` whole days, the last fold ending with the
    last day of ``frame``; each fold trains on the ``train_days`` before its test window minus
    a gap of ``delay_days``. Card precision@k removes the known compromised cards. Every
    fold's training window must lie inside ``frame``, so the folds are alike.

    Args:
        frame: Featured, labelled transactions.
        fit_and_score: ``fit_and_score(train, test)`` fits a model on ``train`` and returns
            its scores of ``test``'s rows (aligned to ``test``'s index).
        train_days: Days of each training window.
        delay_days: The label delay: the gap between training and test windows.
        test_days: Days of each test window, and the step between folds.
        folds: How many test windows.
        top_k: Cards reviewed per day, for card precision@k.
        progress: Show a progress bar over the folds.

    Returns:
        ``folds``: one row of windows (each ``*_end`` the first day after it), row counts and
        metrics per fold; ``summary``: mean and standard deviation of each metric over the folds.
    """
    stamps = frame[TIMESTAMP]
    end = stamps.max().normalize() + pd.Timedelta(days=1)
    _require_reach(stamps, end - pd.Timedelta(days=test_days * folds + delay_days + train_days))
    rows = []
    for fold in tqdm(range(folds), desc="prequential folds", unit="fold", disable=not progress):
        test_end = end - pd.Timedelta(days=test_days * (folds - 1 - fold))
        test_start = test_end - pd.Timedelta(days=test_days)
        train_end = test_start - pd.Timedelta(days=delay_days)
        train_start = train_end - pd.Timedelta(days=train_days)
        train = frame[(stamps >= train_start) & (stamps < train_end)]
        test = frame[(stamps >= test_start) & (stamps < test_end)]
        _require_both_classes(train, f"fold {fold}'s training window from {train_start}")
        _require_both_classes(test, f"fold {fold}'s test window from {test_start}")

        scores = pd.Series(fit_and_score(train, test), index=test.index)
        known = known_compromised_cards(train, test, delay_days)
        row = {
            "fold": fold,
            "train_start": train_start,
            "train_end": train_end,
            "test_start": test_start,
            "test_end": test_end,
            "train_rows": len(train),
            "train_frauds": int(train[LABEL].sum()),
            "test_rows": len(test),
            "test_frauds": int(test[LABEL].sum()),
            "roc_auc": float(roc_auc_score(test[LABEL], scores)),
            "average_precision": float(average_precision_score(test[LABEL], scores)),
            f"card_precision_at_{top_k}": card_precision_at_k(test, scores, top_k, known),
        }
        rows.append(row)
        _log_fold(row, folds, top_k)
    table = pd.DataFrame(rows)
    metrics = ["roc_auc", "average_precision", f"card_precision_at_{top_k}"]
    summary = table[metrics].agg(["mean", "std"]).T
    logger.info("prequential evaluation over %d folds:\n%s", folds, summary.round(4))
    return {"folds": table, "summary": summary}


def _require_reach(stamps: pd.Series, first_train_start: pd.Timestamp) -> None:
    first_day = stamps.min().normalize()
    if first_train_start < first_day:
        raise ValueError(
            f"the prequential folds need transactions from {first_train_start.date()}, but they "
            f"run from {first_day.date()} to {stamps.max().date()}: the oldest fold's training "
            f"window would be cut short; use fewer folds or shorter windows "
            f"(evaluate.prequential_folds, evaluate.prequential_test_days, split.train_days, "
            f"split.delay_days)"
        )


def _log_fold(row: dict, folds: int, top_k: int) -> None:
    logger.info(
        "prequential fold %d/%d: trained on %s rows (%d frauds) from %s to %s, tested on %s "
        "rows (%d frauds) from %s to %s: average precision %.4f, ROC AUC %.4f, "
        "card precision@%d %.4f",
        row["fold"] + 1,
        folds,
        f"{row['train_rows']:,}",
        row["train_frauds"],
        row["train_start"].date(),
        (row["train_end"] - pd.Timedelta(days=1)).date(),
        f"{row['test_rows']:,}",
        row["test_frauds"],
        row["test_start"].date(),
        (row["test_end"] - pd.Timedelta(days=1)).date(),
        row["average_precision"],
        row["roc_auc"],
        top_k,
        row[f"card_precision_at_{top_k}"],
    )


def _require_both_classes(part: pd.DataFrame, name: str) -> None:
    if part[LABEL].nunique() < 2:
        raise ValueError(
            f"{name} holds {len(part):,} transactions and {int(part[LABEL].sum())} frauds: "
            f"it needs both classes; use fewer folds or longer windows"
        )


def window_days(frame: pd.DataFrame) -> float:
    """How many calendar days the rows of ``frame`` cover (at least one)."""
    return float(max(frame[TIMESTAMP].dt.floor("D").nunique(), 1))


def recall_by_kind(frame: pd.DataFrame, scores: pd.Series, threshold: float) -> pd.DataFrame:
    """Recall at ``threshold`` per kind of fraud, where the data names the kinds."""
    if FRAUD_KIND not in frame:
        return pd.DataFrame(columns=["fraud_kind", "frauds", "caught", "recall"])
    fraud = frame[LABEL] == 1
    table = pd.DataFrame(
        {"fraud_kind": frame.loc[fraud, FRAUD_KIND], "caught": scores[fraud] >= threshold}
    )
    table = table.groupby("fraud_kind").agg(frauds=("caught", "size"), caught=("caught", "sum"))
    table["recall"] = table["caught"] / table["frauds"]
    return table.reset_index()


def thin(frame: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """Keep about ``points`` evenly spaced rows of a curve, always the first and the last."""
    if len(frame) <= points:
        return frame.reset_index(drop=True)
    keep = np.unique(
        np.r_[np.linspace(0, len(frame) - 1, points).round().astype(int), len(frame) - 1]
    )
    return frame.iloc[keep].reset_index(drop=True)


def curves(labels: pd.Series, scores: pd.Series) -> dict[str, pd.DataFrame]:
    """ROC and precision-recall curves, thinned, as frames ready for plots and dvc plots."""
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {
        "roc": thin(pd.DataFrame({"fpr": fpr, "tpr": tpr})),
        "precision_recall": thin(pd.DataFrame({"recall": recall, "precision": precision})),
    }


def feature_importances(
    pipeline, frame: pd.DataFrame, features: FeatureSet, seed: int, rows: int = 20_000
):
    """Permutation importance (drop in average precision) of each input column, on test rows."""
    sample = (
        frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    )
    result = permutation_importance(
        pipeline,
        sample[list(features.all)],
        sample[LABEL],
        scoring="average_precision",
        n_repeats=3,
        random_state=seed,
        n_jobs=1,
    )
    table = pd.DataFrame(
        {
            "feature": list(features.all),
            "importance": result.importances_mean,
            "spread": result.importances_std,
        }
    )
    return table.sort_values("importance", ascending=False, ignore_index=True)


def plot_curves(curve_data: dict[str, pd.DataFrame], metrics: dict, labels: dict | None = None):
    """ROC and precision-recall curves side by side; ``curve_data`` may hold several models."""
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, data in curve_data.items():
        roc_axis.plot(
            data["roc"]["fpr"],
            data["roc"]["tpr"],
            label=f"{name} (AUC {metrics[name]['roc_auc']:.3f})",
        )
        pr = data["precision_recall"]
        pr_axis.plot(
            pr["recall"],
            pr["precision"],
            label=f"{name} (AP {metrics[name]['average_precision']:.3f})",
        )
    roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    pr_axis.set(
        xlabel="recall", ylabel="precision", title="Precision-recall curve", ylim=(0, 1.02)
    )
    for axis in (roc_axis, pr_axis):
        axis.legend(loc="lower right" if axis is roc_axis else "upper right")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_confusion(matrix: np.ndarray, title: str = "Confusion matrix at the threshold"):
    """A 2x2 confusion matrix with counts written in the cells."""
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(np.log1p(matrix), cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, f"{count:,}", ha="center", va="center", fontsize=12)
    axis.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["genuine", "fraud"],
        yticklabels=["genuine", "fraud"],
    )
    axis.set(xlabel="predicted", ylabel="actual", title=title)
    figure.tight_layout()
    return figure


def plot_importances(table: pd.DataFrame, top: int = 15):
    """Horizontal bars of the ``top`` most important features."""
    shown = table.head(top).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(shown) + 1))
    axis.barh(shown["feature"], shown["importance"], xerr=shown["spread"], color="tab:blue")
    axis.set(
        xlabel="drop in average precision when shuffled", title="Feature importance (permutation)"
    )
    figure.tight_layout()
    return figure


def plot_prequential(folds: pd.DataFrame, top_k: int):
    """Average precision and card precision@k of each prequential fold, by test window."""
    figure, axis = plt.subplots(figsize=(8, 4))
    positions = np.arange(len(folds))
    metrics = {
        "average precision": folds["average_precision"],
        f"card precision@{top_k}": folds[f"card_precision_at_{top_k}"],
    }
    for label, values in metrics.items():
        (line,) = axis.plot(positions, values, marker="o", label=label)
        # The mean over the folds, as a dotted line of the same colour.
        axis.axhline(values.mean(), color=line.get_color(), linestyle=":", linewidth=1)
    axis.set_xticks(positions, pd.to_datetime(folds["test_start"]).dt.strftime("%Y-%m-%d"))
    axis.margins(x=0.1)
    axis.set(
        xlabel="first day of the test window",
        ylabel="on the test window alone",
        ylim=(0, 1.02),
        title="Prequential evaluation: a model retrained for each test window",
    )
    axis.legend(loc="upper left")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def evaluate_model(
    root,
    *,
    top_k: int,
    threshold_policy: str,
    alert_budget: int,
    target_precision: float,
    cost_false_positive: float,
    cost_false_negative: float,
    seed: int,
) -> dict:
    """The evaluate stage: score the test window, pick the threshold, write metrics and plot data.

    Returns:
        A dict with the metrics, the threshold, the classification report, the confusion
        matrix, the curves, recall by fraud kind and the feature importances.
    """
    root = Path(root)
    paths.require_inputs(
        root, paths.TRAIN, paths.TEST, paths.FEATURES, paths.MODEL, paths.MODEL_CARD
    )
    test = pd.read_parquet(root / paths.TEST)
    features = read_feature_set(root)
    pipeline, card = load_model(root / paths.MODEL, root / paths.MODEL_CARD)
    scores = fraud_scores(pipeline, test, features)

    threshold = choose_threshold(
        scores,
        test[LABEL],
        window_days(test),
        threshold_policy,
        alert_budget,
        target_precision,
        cost_false_positive,
        cost_false_negative,
    )
    threshold["model_sha256"] = card["sha256"]
    # The field's protocol: cards known to be compromised before a test day are not ranked.
    train = (
        pd.read_parquet(root / paths.TRAIN, columns=[CUSTOMER_ID, TIMESTAMP, LABEL])
        if (CUSTOMER_ID in test)
        else None
    )
    delay = read_feature_settings(root).get("label_delay_days", 7)
    metrics = evaluate_scores(test, scores, top_k, threshold, train, delay)
    predicted = (scores >= threshold["threshold"]).astype(int)
    result = {
        "metrics": metrics,
        "threshold": threshold,
        "model": card,
        "report": classification_report(
            test[LABEL], predicted, target_names=["genuine", "fraud"], digits=4, zero_division=0
        ),
        "confusion": confusion_matrix(test[LABEL], predicted, labels=[0, 1]),
        "curves": curves(test[LABEL], scores),
        "recall_by_kind": recall_by_kind(test, scores, threshold["threshold"]),
        "importances": feature_importances(pipeline, test, features, seed),
    }
    write_evaluation(root, result, test[LABEL], predicted)
    return result


def write_evaluation(root: Path, result: dict, labels: pd.Series, predicted: pd.Series) -> None:
    """Write metrics.json, the threshold beside the model, and the data behind each plot."""
    plots = root / paths.PLOTS_DIR
    write_csv_atomic(result["curves"]["roc"], plots / "roc.csv")
    write_csv_atomic(result["curves"]["precision_recall"], plots / "precision_recall.csv")
    write_csv_atomic(
        pd.DataFrame({"actual": labels, "predicted": predicted}), plots / "confusion.csv"
    )
    write_csv_atomic(result["importances"], plots / "importances.csv")
    write_json_atomic(result["threshold"], root / paths.THRESHOLD)
    rounded = {
        key: round(value, 6) if isinstance(value, float) else value
        for key, value in result["metrics"].items()
    }
    write_json_atomic(
        {**rounded, "model_type": result["model"]["model_type"]}, root / paths.METRICS
    )
    logger.info("evaluated %s: %s", result["model"]["model_type"], rounded)


def prequential_evaluation(
    root,
    *,
    folds: int,
    test_days: float,
    train_days: float,
    delay_days: float,
    top_k: int,
    progress: bool = True,
) -> dict[str, pd.DataFrame] | None:
    """The evaluate stage's prequential evaluation: the model retrained fold by fold.

    The history gets the features the preprocess stage built (its recorded settings); each fold
    of :func:`prequential` fits a fresh pipeline of the model card's type, hyperparameters and
    seed. Writes the folds to ``reports/plots/prequential.csv`` and their mean and standard
    deviation under ``prequential`` in ``reports/metrics.json``, so run it after
    :func:`evaluate_model`, which writes that file.

    Returns:
        ``folds`` and ``summary`` as from :func:`prequential`; None when ``folds`` is 0, and
        then nothing is written.
    """
    if folds < 0:
        raise ValueError(f"evaluate.prequential_folds must be 0 (off) or more, got {folds}")
    if folds == 0:
        logger.info("prequential evaluation off (evaluate.prequential_folds is 0)")
        return None
    root = Path(root)
    paths.require_inputs(root, paths.HISTORY, paths.FEATURES, paths.MODEL_CARD)
    if not (root / paths.METRICS).exists():
        raise FileNotFoundError(
            f"{root / paths.METRICS} is missing: the prequential summary goes into the metrics "
            f"evaluate_model writes; run evaluate_model first (the cells above in notebook 5)"
        )
    card = json.loads((root / paths.MODEL_CARD).read_text())
    features = read_feature_set(root)
    frame = _featured_history(root)

    def fit_and_score(train: pd.DataFrame, test: pd.DataFrame) -> pd.Series:
        pipeline = build_pipeline(
            features, card["model_type"], card["hyperparameters"], card["seed"]
        )
        fit(pipeline, train, features)
        return fraud_scores(pipeline, test, features)

    result = prequential(
        frame, fit_and_score, train_days, delay_days, test_days, folds, top_k, progress
    )
    write_prequential(root, result)
    return result


def _featured_history(root: Path) -> pd.DataFrame:
    settings = read_feature_settings(root)
    if "card_windows" not in settings:
        raise ValueError(
            f"{root / paths.FEATURES} records no feature settings; rerun the preprocess stage "
            f"(`dvc repro preprocess`)"
        )
    history = read_canonical(root, paths.HISTORY)
    frame, _ = add_features(
        history, tuple(settings["card_windows"]), **terminal_settings(settings)
    )
    return frame


def write_prequential(root: Path, result: dict[str, pd.DataFrame]) -> None:
    """Write the folds' table beside the plot data and add their summary to metrics.json."""
    write_csv_atomic(result["folds"], root / paths.PREQUENTIAL)
    summary = {
        metric: {statistic: _json_number(value) for statistic, value in row.items()}
        for metric, row in result["summary"].iterrows()
    }
    metrics = json.loads((root / paths.METRICS).read_text())
    write_json_atomic({**metrics, "prequential": summary}, root / paths.METRICS)
    logger.info(
        "wrote %d prequential folds to %s and their summary to %s",
        len(result["folds"]),
        paths.PREQUENTIAL,
        paths.METRICS,
    )


def _json_number(value: float) -> float | None:
    # One fold has no standard deviation; JSON has no NaN, so it is written as null.
    return round(float(value), 6) if math.isfinite(value) else None


def save_figure(figure, root, name: str, folder: str = "evaluate") -> Path:
    """Save a figure as PNG under ``reports/figures/<folder>/``."""
    path = Path(root) / paths.FIGURES_DIR / folder / f"{name}.png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def production_summary(root) -> dict:
    """Which model is in production and why, and every registered version's key metrics."""
    from fraudops.registry import Registry

    root = Path(root)
    registry = Registry(root)
    report = json.loads((root / "reports" / "retrain.json").read_text())
    rows = []
    for version in registry.versions():
        metrics = version.get("metrics") or {}
        rows.append(
            {
                "version": version["version"],
                "model_type": version["model_type"],
                "in_production": version["version"] == registry.production(),
                "average_precision": round(metrics.get("average_precision", float("nan")), 4),
                "roc_auc": round(metrics.get("roc_auc", float("nan")), 4),
                "decision": (version.get("decision") or {}).get("outcome"),
            }
        )
    decision = report["decision"]
    text = f"production model: {decision['production']} ({decision['reason']})"
    return {"decision": text, "versions": pd.DataFrame(rows)}
