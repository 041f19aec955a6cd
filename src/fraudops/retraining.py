"""Retraining: a challenger trained on old plus new data against the production champion.

Both models are scored on the same most recent held-out window of the new labelled batch;
the challenger goes to production only if the promotion rule says it is measurably better.
Whatever happens (no fraud to learn from, a challenger that fails to train, a pinned
production model) the decision and its reason are written to ``reports/retrain.json``, and
the production model is replaced only by a model that trained and was evaluated.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio

from fraudops import paths
from fraudops.audit import AuditLog
from fraudops.data import (
    CUSTOMER_ID,
    LABEL,
    TIMESTAMP,
    TRANSACTION_ID,
    DataValidationError,
    read_canonical,
)
from fraudops.evaluation import (
    choose_threshold,
    curves,
    evaluate_scores,
    recall_by_kind,
    window_days,
)
from fraudops.features import (
    FeatureSet,
    add_features,
    parse_windows,
    read_feature_set,
    read_feature_settings,
    terminal_settings,
)
from fraudops.io import atomic_path, write_json_atomic
from fraudops.model import build_pipeline, fit, fraud_scores, load_model
from fraudops.registry import Registry, data_version

logger = logging.getLogger(__name__)

RETRAIN_REPORT = paths.REPORTS_DIR / "retrain.json"
WINDOWS = ("all", "sliding")


@dataclass(frozen=True)
class PromotionRule:
    """When a challenger replaces the champion.

    Attributes:
        metric: The metric compared, e.g. ``average_precision``.
        min_improvement: How much higher the challenger's metric must be (absolute).
        max_recall_drop: How much recall at the chosen threshold the challenger may lose.
    """

    metric: str = "average_precision"
    min_improvement: float = 0.005
    max_recall_drop: float = 0.0


def decide(champion: dict | None, challenger: dict | None, rule: PromotionRule) -> dict:
    """Apply ``rule`` to the two models' metrics on the same window.

    Returns:
        ``outcome`` ("promote" or "keep"), a ``reason`` a person can read, and the
        improvement in the rule's metric where both models were measured.
    """
    if challenger is None:
        return {"outcome": "keep", "reason": "the challenger has no metrics", "improvement": None}
    if champion is None:
        return {
            "outcome": "promote",
            "reason": "no model is in production yet",
            "improvement": None,
        }
    for name, metrics in (("champion", champion), ("challenger", challenger)):
        if not np.isfinite(metrics.get(rule.metric, np.nan)):
            reason = f"the {name}'s {rule.metric} is not a number"
            return {"outcome": "keep", "reason": reason, "improvement": None}
    improvement = challenger[rule.metric] - champion[rule.metric]
    recall_change = challenger["recall_at_threshold"] - champion["recall_at_threshold"]
    measured = (
        f"{rule.metric} {champion[rule.metric]:.4f} -> {challenger[rule.metric]:.4f} "
        f"({improvement:+.4f}), recall at threshold {champion['recall_at_threshold']:.3f} -> "
        f"{challenger['recall_at_threshold']:.3f}"
    )
    if improvement < rule.min_improvement:
        reason = (
            f"kept the champion: {measured}; the rule asks for at least +{rule.min_improvement}"
        )
        return {"outcome": "keep", "reason": reason, "improvement": improvement}
    if recall_change < -rule.max_recall_drop:
        reason = (
            f"kept the champion: {measured}; the challenger loses more recall than the "
            f"allowed {rule.max_recall_drop}"
        )
        return {"outcome": "keep", "reason": reason, "improvement": improvement}
    reason = f"promoted the challenger: {measured}"
    return {"outcome": "promote", "reason": reason, "improvement": improvement}


def check_new_batch(history: pd.DataFrame, new_batch: pd.DataFrame, where: str) -> None:
    """Refuse a new batch that repeats history ids or is not later than the history."""
    problems = []
    repeated = int(new_batch[TRANSACTION_ID].isin(history[TRANSACTION_ID]).sum())
    if repeated:
        problems.append(
            f"column '{TRANSACTION_ID}': rule 'new ids do not repeat the history' broken by "
            f"{repeated:,} rows"
        )
    last_seen = history[TIMESTAMP].max()
    older = int((new_batch[TIMESTAMP] <= last_seen).sum())
    if older:
        problems.append(
            f"column '{TIMESTAMP}': rule 'later than the history (which ends {last_seen})' "
            f"broken by {older:,} rows"
        )
    if problems:
        raise DataValidationError(where, problems)


def windows(
    combined: pd.DataFrame,
    new_batch_start: pd.Timestamp,
    eval_days: float,
    delay_days: float,
    window: str,
    window_days: float,
) -> tuple[pd.Series, pd.Series, dict]:
    """Masks of the challenger's training rows and the evaluation rows, and their bounds."""
    if window not in WINDOWS:
        raise ValueError(f"unknown retrain.window {window!r}; use one of {', '.join(WINDOWS)}")
    end = combined[TIMESTAMP].max()
    eval_start = max(end - pd.Timedelta(days=eval_days), new_batch_start)
    train_end = eval_start - pd.Timedelta(days=delay_days)
    train_start = combined[TIMESTAMP].min()
    if window == "sliding":
        train_start = max(train_start, train_end - pd.Timedelta(days=window_days))
    stamps = combined[TIMESTAMP]
    train = (stamps >= train_start) & (stamps < train_end)
    evaluation = stamps >= eval_start
    bounds = {
        "window": window,
        "train_start": str(train_start),
        "train_end": str(train_end),
        "eval_start": str(eval_start),
        "eval_end": str(end),
    }
    return train, evaluation, bounds


def labels_known_before(combined: pd.DataFrame, until: pd.Timestamp) -> pd.DataFrame | None:
    """The labelled rows older than ``until``, as card, time and label; None without card ids.

    Given the start of the label-delay gap before the evaluation window, these are the rows
    whose labels are known when the window opens, whatever the challenger's training window.
    """
    if CUSTOMER_ID not in combined:
        return None
    return combined.loc[combined[TIMESTAMP] < until, [CUSTOMER_ID, TIMESTAMP, LABEL]]


def evaluate_on(
    pipeline,
    rows: pd.DataFrame,
    features: FeatureSet,
    settings: dict,
    labelled_before: pd.DataFrame | None = None,
    delay_days: float = 7,
) -> dict:
    """Scores, threshold by the evaluation policy, metrics and curves of one model on ``rows``.

    With ``labelled_before`` (the rows whose labels are known when ``rows`` begin), card
    precision@k leaves out the cards known to be compromised, from those labels or from the
    labels of ``rows`` once ``delay_days`` have passed, as the evaluate stage does.
    """
    scores = fraud_scores(pipeline, rows, features)
    if not np.isfinite(scores).all():
        raise ValueError("the model gives scores that are not numbers")
    threshold = choose_threshold(
        scores,
        rows[LABEL],
        window_days(rows),
        settings["threshold_policy"],
        settings["alert_budget"],
        settings["target_precision"],
        settings["cost_false_positive"],
        settings["cost_false_negative"],
    )
    metrics = evaluate_scores(
        rows, scores, settings["top_k"], threshold, labelled_before, delay_days
    )
    predicted = scores >= threshold["threshold"]
    return {
        "scores": scores,
        "threshold": threshold,
        "metrics": metrics,
        "recall_by_kind": recall_by_kind(rows, scores, threshold["threshold"]),
        "curves": curves(rows[LABEL], scores),
        "confusion": _confusion(rows[LABEL], predicted),
    }


def _confusion(labels: pd.Series, predicted: pd.Series) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, predicted.astype(int), labels=[0, 1])


def retrain(
    root,
    *,
    window: str,
    window_days: float,
    eval_days: float,
    delay_days: float,
    rule: PromotionRule,
    model_type: str,
    hyperparameters: dict,
    evaluation_settings: dict,
    card_windows: str,
    seed: int,
    audit_path: str | Path = paths.AUDIT_LOG,
) -> dict:
    """The retrain stage: train a challenger, compare it with the champion, decide, publish.

    Returns:
        The decision, both models' evaluations (metrics, thresholds, curves, recall by kind)
        and the windows used; the same minus curves is written to ``reports/retrain.json``.
    """
    root = Path(root)
    paths.require_inputs(root, paths.HISTORY, paths.NEW_BATCH, paths.MODEL, paths.MODEL_CARD)
    history = read_canonical(root, paths.HISTORY)
    new_batch = read_canonical(root, paths.NEW_BATCH)
    check_new_batch(history, new_batch, str(root / paths.NEW_BATCH))
    feature_set = read_feature_set(root)
    feature_settings = read_feature_settings(root)

    combined = pd.concat([history, new_batch], ignore_index=True)
    combined, _ = add_features(
        combined, parse_windows(card_windows), **terminal_settings(feature_settings)
    )
    train_mask, eval_mask, bounds = windows(
        combined, new_batch[TIMESTAMP].min(), eval_days, delay_days, window, window_days
    )
    train_rows, eval_rows = combined[train_mask], combined[eval_mask]
    # Cards frauded before the delay gap are known to be compromised when the window opens;
    # card precision@k leaves them out, as the evaluate stage does. The gap's labels arrive
    # during the window and, as there, are not counted.
    known = labels_known_before(combined, pd.Timestamp(bounds["train_end"]))

    registry = Registry(root)
    audit = AuditLog(root / audit_path)
    champion_version = _champion(root, registry, audit)
    champion_pipeline, champion_card = registry.load(champion_version)
    champion_features = _feature_set_of(champion_card, feature_set)

    result = {"windows": bounds, "champion": {"version": champion_version}, "challenger": {}}
    result["windows"].update(
        train_rows=int(train_mask.sum()),
        eval_rows=int(eval_mask.sum()),
        eval_frauds=int(eval_rows[LABEL].sum()),
        new_batch_frauds=int(new_batch[LABEL].sum()),
    )
    if eval_rows[LABEL].sum() == 0:
        reason = (
            "kept the champion: the evaluation window holds no fraud, so no comparison is possible"
        )
        return _finish(root, registry, audit, result, {"outcome": "keep", "reason": reason}, None)

    result["champion"].update(
        evaluate_on(
            champion_pipeline,
            eval_rows,
            champion_features,
            evaluation_settings,
            known,
            delay_days,
        )
    )
    try:
        challenger = build_pipeline(feature_set, model_type, hyperparameters, seed)
        fit(challenger, train_rows, feature_set)
        result["challenger"].update(
            evaluate_on(challenger, eval_rows, feature_set, evaluation_settings, known, delay_days)
        )
    except Exception as error:  # any failure of the challenger keeps the champion
        logger.warning("the challenger failed: %s: %s", type(error).__name__, error)
        failure = f"{type(error).__name__}: {error}"
        reason = f"kept the champion: the challenger failed to train or score ({failure})"
        return _finish(root, registry, audit, result, {"outcome": "keep", "reason": reason}, None)

    decision = decide(result["champion"]["metrics"], result["challenger"]["metrics"], rule)
    if registry.state().get("pinned") and decision["outcome"] == "promote":
        decision = {
            **decision,
            "outcome": "keep",
            "reason": f"kept the pinned production model {champion_version} "
            f"(`fraudops registry unpin` allows promotion); without the pin the rule would "
            f"have {decision['reason']}",
        }
    card = {
        "model_type": model_type,
        "hyperparameters": hyperparameters,
        "seed": seed,
        "features": feature_set.to_dict(),
        "feature_settings": feature_settings,
        "training_window": [bounds["train_start"], bounds["train_end"]],
        "training_rows": int(train_mask.sum()),
        "training_fraud_rate": float(train_rows[LABEL].mean()),
        "data_version": data_version(root, [paths.HISTORY, paths.NEW_BATCH]),
        "params": {
            "window": window,
            "window_days": window_days,
            "eval_days": eval_days,
            "rule": rule.__dict__,
        },
        "metrics": result["challenger"]["metrics"],
        "threshold": result["challenger"]["threshold"],
        "role": "challenger",
    }
    return _finish(root, registry, audit, result, decision, (challenger, card))


def _champion(root: Path, registry: Registry, audit: AuditLog) -> str:
    """The production version; on the first run, the train stage's model becomes version 1."""
    if registry.production() is not None:
        return registry.production()
    card = json.loads((root / paths.MODEL_CARD).read_text())
    load_model(root / paths.MODEL, root / paths.MODEL_CARD)  # refuses a tampered file
    card = {
        **card,
        "data_version": data_version(root, [paths.TRAIN]),
        "role": "first model",
        "decision": {"outcome": "promote", "reason": "the first model trained on the history"},
    }
    version = registry.register(root / paths.MODEL, card)
    registry.promote(version, "the first model trained on the history")
    audit.append(
        "model_promoted", version=version, reason="the first model trained on the history"
    )
    return version


def _feature_set_of(card: dict, default: FeatureSet) -> FeatureSet:
    stored = card.get("features")
    if not stored:
        return default
    return FeatureSet(tuple(stored["numeric"]), tuple(stored["categorical"]))


def _finish(
    root: Path, registry: Registry, audit: AuditLog, result: dict, decision: dict, challenger
) -> dict:
    """Register the challenger, apply the decision, publish production, write the report."""
    champion = result["champion"]["version"]
    if "threshold" in result["champion"]:
        registry.update_card(
            champion,
            threshold=result["champion"]["threshold"],
            metrics=result["champion"]["metrics"],
        )
    if challenger is not None:
        pipeline, card = challenger
        with atomic_path(root / paths.MODELS_DIR / "challenger.skops") as tmp:
            sio.dump(pipeline, tmp)
            version = registry.register(tmp, {**card, "decision": decision})
        result["challenger"]["version"] = version
        if decision["outcome"] == "promote":
            registry.promote(version, decision["reason"])
    registry.publish()
    event = "model_promoted" if decision["outcome"] == "promote" else "model_kept"
    audit.append(
        event,
        version=registry.production(),
        challenger=result["challenger"].get("version"),
        reason=decision["reason"],
    )
    result["decision"] = {**decision, "production": registry.production()}
    logger.info("retrain: %s", decision["reason"])
    write_json_atomic(_report(result), root / RETRAIN_REPORT)
    return result


def _report(result: dict) -> dict:
    """The JSON-able part of a retrain result: no scores, curves or matrices."""
    report = {"decision": result["decision"], "windows": result["windows"]}
    for role in ("champion", "challenger"):
        part = result[role]
        report[role] = {
            "version": part.get("version"),
            "metrics": part.get("metrics"),
            "threshold": part.get("threshold", {}).get("threshold"),
            "recall_by_kind": part["recall_by_kind"]
            .set_index("fraud_kind")["recall"]
            .round(4)
            .to_dict()
            if "recall_by_kind" in part
            else None,
        }
    return report


def compared_models(result: dict) -> dict[str, dict]:
    """The evaluated models of a retrain result, named by role and version."""
    named = {}
    for role in ("champion", "challenger"):
        part = result[role]
        if "metrics" in part:
            named[f"{role} {part.get('version') or ''}".strip()] = part
    return named


def side_by_side(result: dict) -> pd.DataFrame:
    """Both models' metrics on the evaluation window, one column each."""
    table = {name: part["metrics"] for name, part in compared_models(result).items()}
    return pd.DataFrame(table)


def recall_by_kind_table(result: dict) -> pd.DataFrame:
    """Recall per kind of fraud for each model, with how many frauds of each kind there were."""
    columns = {}
    frauds = None
    for name, part in compared_models(result).items():
        by_kind = part["recall_by_kind"].set_index("fraud_kind")
        columns[name] = by_kind["recall"]
        frauds = by_kind["frauds"]
    table = pd.DataFrame(columns)
    if frauds is not None:
        table.insert(0, "frauds", frauds)
    return table
