"""Drift monitoring: does the batch to score still look like what the model learned from?

The reference is the production model's training rows. For each feature: the population
stability index (PSI) over bins (quantile bins of the reference for numbers, categories for
text) and a two-sample test (Kolmogorov-Smirnov for numbers, chi-squared for categories);
then the shift of the model's score distribution, and of the fraud rate where labels exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fraudops import paths
from fraudops.data import LABEL, TIMESTAMP, TRANSACTION_ID, read_canonical
from fraudops.features import FeatureSet, add_features, parse_windows, terminal_settings
from fraudops.io import write_json_atomic
from fraudops.model import fraud_scores
from fraudops.registry import Registry

logger = logging.getLogger(__name__)

DRIFT_REPORT = paths.REPORTS_DIR / "drift.json"
MISSING = "(missing)"
OTHER = "(not in reference)"
EPSILON = 1e-4  # floor of a bin's share, so an empty bin does not make the PSI infinite
MAX_REFERENCE_ROWS = 200_000


@dataclass(frozen=True)
class DriftThresholds:
    """When a shift counts.

    Attributes:
        psi_warn: PSI from which a feature is worth watching (0.1 is the usual line).
        psi_alert: PSI from which a feature has drifted (0.25 is the usual line).
        p_value: Significance level of the two-sample tests.
        fraud_rate_ratio: Relative change of the fraud rate that counts as a shift.
    """

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    p_value: float = 0.01
    fraud_rate_ratio: float = 1.5


def numeric_bins(reference: pd.Series, bins: int) -> np.ndarray:
    """Bin edges at the reference's quantiles, open at both ends."""
    values = reference.dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return np.array([-np.inf, np.inf])
    inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.r_[-np.inf, inner, np.inf]


def _numeric_shares(values: pd.Series, edges: np.ndarray) -> pd.Series:
    binned = pd.cut(values.astype(float), edges, right=True, include_lowest=True)
    labels = binned.astype(object).where(binned.notna(), MISSING).astype(str)
    return labels.value_counts(normalize=True)


def _categorical_shares(values: pd.Series, known: set) -> pd.Series:
    text = values.astype(object).where(values.notna(), MISSING).astype(str)
    text = text.where(text.isin(known | {MISSING}), OTHER)
    return text.value_counts(normalize=True)


def psi(reference_shares: pd.Series, batch_shares: pd.Series) -> float:
    """Population stability index between two distributions over the same bins."""
    bins = reference_shares.index.union(batch_shares.index)
    expected = reference_shares.reindex(bins, fill_value=0).clip(lower=EPSILON)
    actual = batch_shares.reindex(bins, fill_value=0).clip(lower=EPSILON)
    return float(((actual - expected) * np.log(actual / expected)).sum())


def feature_drift(
    reference: pd.Series, batch: pd.Series, categorical: bool, bins: int = 10
) -> dict:
    """PSI and a two-sample test of one feature, reference against batch."""
    if categorical:
        known = set(reference.dropna().astype(str))
        ref_shares = _categorical_shares(reference, known)
        batch_shares = _categorical_shares(batch, known)
        counts = pd.concat([ref_shares * len(reference), batch_shares * len(batch)], axis=1)
        counts = counts.fillna(0).to_numpy().T
        counts = counts[:, counts.sum(axis=0) > 0]
        test = "chi-squared"
        p_value = float(stats.chi2_contingency(counts)[1]) if counts.shape[1] > 1 else 1.0
    else:
        edges = numeric_bins(reference, bins)
        ref_shares = _numeric_shares(reference, edges)
        batch_shares = _numeric_shares(batch, edges)
        test = "kolmogorov-smirnov"
        ref_values, batch_values = reference.dropna(), batch.dropna()
        p_value = (
            float(stats.ks_2samp(ref_values, batch_values).pvalue)
            if len(ref_values) and len(batch_values)
            else 1.0
        )
    return {"psi": psi(ref_shares, batch_shares), "test": test, "p_value": p_value}


def drift_table(
    reference: pd.DataFrame,
    batch: pd.DataFrame,
    features: FeatureSet,
    thresholds: DriftThresholds,
) -> pd.DataFrame:
    """One row per feature: PSI, test, p-value and status (stable, watch or drift)."""
    rows = []
    for name in features.all:
        result = feature_drift(reference[name], batch[name], name in features.categorical)
        rows.append({"feature": name, **result})
    table = pd.DataFrame(rows)
    table["status"] = np.select(
        [
            (table["psi"] >= thresholds.psi_alert) & (table["p_value"] < thresholds.p_value),
            table["psi"] >= thresholds.psi_warn,
        ],
        ["drift", "watch"],
        default="stable",
    )
    return table.sort_values("psi", ascending=False, ignore_index=True)


def fraud_rate_shift(reference_labels: pd.Series, batch_labels: pd.Series, thresholds) -> dict:
    """The fraud rate before and now, with a chi-squared test; empty when there are no labels."""
    if batch_labels is None or len(batch_labels) == 0:
        return {"available": False}
    before, now = float(reference_labels.mean()), float(batch_labels.mean())
    table = np.array(
        [
            [reference_labels.sum(), len(reference_labels) - reference_labels.sum()],
            [batch_labels.sum(), len(batch_labels) - batch_labels.sum()],
        ]
    )
    p_value = (
        float(stats.chi2_contingency(table)[1]) if table.min() >= 0 and table[:, 0].sum() else 1.0
    )
    ratio = now / before if before > 0 else np.inf
    shifted = p_value < thresholds.p_value and (
        ratio >= thresholds.fraud_rate_ratio or ratio <= 1 / thresholds.fraud_rate_ratio
    )
    return {
        "available": True,
        "reference_rate": before,
        "batch_rate": now,
        "ratio": ratio,
        "p_value": p_value,
        "shifted": bool(shifted),
    }


def reference_and_batch(root: Path, card: dict, card_windows: str, seed: int):
    """Features of the production model's training rows and of the batch to score."""
    history = read_canonical(root, paths.HISTORY)
    new_batch = read_canonical(root, paths.NEW_BATCH)
    score_batch = read_canonical(root, paths.SCORE_BATCH)
    known = pd.concat([history, new_batch], ignore_index=True)
    windows = parse_windows(card_windows)
    terminal = terminal_settings(card.get("feature_settings"))
    known, _ = add_features(known, windows, **terminal)
    batch, _ = add_features(score_batch, windows, context=known, **terminal)
    start, end = (pd.Timestamp(value) for value in card["training_window"])
    reference = known[(known[TIMESTAMP] >= start) & (known[TIMESTAMP] <= end)]
    if len(reference) > MAX_REFERENCE_ROWS:
        reference = reference.sample(n=MAX_REFERENCE_ROWS, random_state=seed)
    return reference, batch


def monitor(root, *, thresholds: DriftThresholds, card_windows: str, seed: int) -> dict:
    """The monitor stage: compare the batch to score with the production model's training data.

    Returns:
        The per-feature table, the score and fraud-rate shifts, whether retraining is
        recommended and why; the JSON part is also written to ``reports/drift.json``.
    """
    root = Path(root)
    paths.require_inputs(root, paths.HISTORY, paths.NEW_BATCH, paths.SCORE_BATCH)
    registry = Registry(root)
    pipeline, card = registry.load(registry.production())
    features = FeatureSet(
        tuple(card["features"]["numeric"]), tuple(card["features"]["categorical"])
    )
    reference, batch = reference_and_batch(root, card, card_windows, seed)

    table = drift_table(reference, batch, features, thresholds)
    reference_scores = fraud_scores(pipeline, reference, features)
    batch_scores = fraud_scores(pipeline, batch, features)
    score_shift = feature_drift(reference_scores, batch_scores, categorical=False)
    labels = pd.read_parquet(root / paths.SCORE_LABELS)
    labelled = batch[[TRANSACTION_ID]].merge(labels, on=TRANSACTION_ID, how="inner")
    fraud_shift = fraud_rate_shift(reference[LABEL], labelled.get(LABEL), thresholds)

    drifting = table.loc[table["status"] == "drift", "feature"].tolist()
    reasons = [
        f"{name} (PSI {psi_of:.2f})"
        for name, psi_of in zip(
            drifting, table.loc[table["status"] == "drift", "psi"], strict=True
        )
    ]
    if score_shift["psi"] >= thresholds.psi_alert:
        reasons.append(f"model scores (PSI {score_shift['psi']:.2f})")
    if fraud_shift.get("shifted"):
        reasons.append(
            f"fraud rate {fraud_shift['reference_rate']:.3%} -> {fraud_shift['batch_rate']:.3%}"
        )
    summary = {
        "production_version": card.get("version"),
        "reference_rows": len(reference),
        "batch_rows": len(batch),
        "thresholds": thresholds.__dict__,
        "features": table.to_dict(orient="records"),
        "drifting_features": drifting,
        "score_shift": score_shift,
        "fraud_rate": fraud_shift,
        "retraining_recommended": bool(reasons),
        "reasons": reasons,
    }
    write_json_atomic(summary, root / DRIFT_REPORT)
    logger.info(
        "drift: %d of %d features drifted; retraining %srecommended",
        len(drifting),
        len(table),
        "" if reasons else "not ",
    )
    return {
        **summary,
        "table": table,
        "reference": reference,
        "batch": batch,
        "reference_scores": reference_scores,
        "batch_scores": batch_scores,
    }


def plot_feature(reference: pd.Series, batch: pd.Series, name: str, categorical: bool):
    """Reference against batch distribution of one feature, as shares."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2))
    if categorical:
        shares = pd.DataFrame(
            {
                "reference": reference.fillna(MISSING).value_counts(normalize=True),
                "batch": batch.fillna(MISSING).value_counts(normalize=True),
            }
        ).fillna(0)
        shares.plot.bar(ax=axis)
    else:
        edges = numeric_bins(reference, 20)
        finite = np.r_[reference.min(), edges[1:-1], reference.max()]
        axis.hist(
            reference.dropna(), bins=np.unique(finite), density=True, alpha=0.5, label="reference"
        )
        axis.hist(
            batch.dropna().clip(finite[0], finite[-1]),
            bins=np.unique(finite),
            density=True,
            alpha=0.5,
            label="batch",
        )
        axis.legend()
    axis.set(title=name, ylabel="share" if categorical else "density")
    figure.tight_layout()
    return figure


def drift_alerts(summary: dict, batch_version: str) -> list:
    """A "retraining recommended" alert when the batch has drifted; none otherwise.

    The key names the batch's content hash, so rerunning on the same batch raises no second
    alert.
    """
    from fraudops.alerts import Alert

    if not summary["retraining_recommended"]:
        return []
    return [
        Alert.new(
            "drift",
            key=f"drift:{batch_version}",
            title="Retraining recommended: the batch to score has drifted",
            severity="medium",
            details={
                "reasons": summary["reasons"],
                "production_version": summary["production_version"],
                "batch_rows": summary["batch_rows"],
            },
        )
    ]


def raise_drift_alerts(root, summary: dict, outbox: str, digest_cap: int, immediate_severity: str):
    """Hand any drift alert to the shared alert helper; return its delivery report."""
    from fraudops.alerts import AlertSettings, raise_alerts
    from fraudops.registry import file_md5

    root = Path(root)
    alerts = drift_alerts(summary, file_md5(root / paths.SCORE_BATCH))
    settings = AlertSettings.from_env(dotenv_path=root / ".env")
    return raise_alerts(
        alerts,
        root / outbox,
        settings,
        digest_cap=digest_cap,
        immediate_severity=immediate_severity,
        run_id="monitor",
    )


def features_to_plot(table: pd.DataFrame, limit: int = 6) -> list[str]:
    """The drifting features, then the most shifted others, at most ``limit`` in all."""
    ranked = table.sort_values(["status", "psi"], key=_status_rank, ascending=[True, False])
    return ranked["feature"].head(limit).tolist()


def _status_rank(column: pd.Series) -> pd.Series:
    if column.name == "status":
        return column.map({"drift": 0, "watch": 1, "stable": 2})
    return column
