"""Tests of drift monitoring: PSI, per-feature drift, fraud-rate shift and the monitor stage."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from fraudops import paths
from fraudops.features import FeatureSet
from fraudops.monitoring import (
    DRIFT_REPORT,
    DriftThresholds,
    drift_alerts,
    drift_table,
    feature_drift,
    features_to_plot,
    fraud_rate_shift,
    monitor,
    psi,
    raise_drift_alerts,
)
from fraudops.registry import Registry, file_md5

THRESHOLDS = DriftThresholds()
ROWS = 5000
FEATURES = FeatureSet(numeric=("amount",), categorical=("channel",))


def _amounts(seed: int, shift_sd: float = 0.0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(100 + 20 * shift_sd, 20, ROWS))


def _channels(seed: int, first_share: float = 0.1) -> pd.Series:
    rest = (1 - first_share) / 2
    shares = [first_share, rest, rest]
    return pd.Series(np.random.default_rng(seed).choice(["pos", "online", "atm"], ROWS, p=shares))


# ---------------------------------------------------------------------------------------------
# The population stability index
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shares",
    [{"a": 1.0}, {"a": 0.5, "b": 0.5}, {"a": 0.1, "b": 0.2, "c": 0.7}],
)
def test_psi_of_identical_distributions_is_zero(shares) -> None:
    assert psi(pd.Series(shares), pd.Series(shares)) == 0.0


def test_psi_follows_its_definition_and_is_symmetric() -> None:
    before, after = pd.Series({"a": 0.5, "b": 0.5}), pd.Series({"a": 0.25, "b": 0.75})
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)

    assert psi(before, after) == pytest.approx(expected)
    assert psi(after, before) == pytest.approx(expected)


def test_psi_of_a_bin_missing_on_one_side_is_finite() -> None:
    value = psi(pd.Series({"a": 1.0}), pd.Series({"a": 0.9, "b": 0.1}))
    assert math.isfinite(value)
    assert value > 0.25


def test_psi_grows_with_the_shift() -> None:
    reference = _amounts(1)
    shifts = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]  # in standard deviations
    values = [feature_drift(reference, _amounts(2, s), categorical=False)["psi"] for s in shifts]

    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert values[0] < 0.1
    assert values[-1] > 1.0


@pytest.mark.parametrize("categorical", [False, True])
def test_a_feature_against_itself_has_no_drift(categorical) -> None:
    values = _channels(1) if categorical else _amounts(1)

    result = feature_drift(values, values, categorical=categorical)

    assert result["psi"] == 0.0
    assert result["p_value"] == pytest.approx(1.0)
    assert result["test"] == ("chi-squared" if categorical else "kolmogorov-smirnov")


# ---------------------------------------------------------------------------------------------
# Per-feature drift
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_shift", "first_share", "statuses"),
    [
        (0.0, 0.1, {"amount": "stable", "channel": "stable"}),
        (1.0, 0.1, {"amount": "drift", "channel": "stable"}),
        (0.0, 0.4, {"amount": "stable", "channel": "drift"}),
        (1.0, 0.4, {"amount": "drift", "channel": "drift"}),
    ],
    ids=["same-distribution", "mean-up-one-sd", "category-10-to-40-percent", "both"],
)
def test_drift_table_flags_only_the_shifted_features(amount_shift, first_share, statuses) -> None:
    reference = pd.DataFrame({"amount": _amounts(1), "channel": _channels(1)})
    batch = pd.DataFrame(
        {"amount": _amounts(2, amount_shift), "channel": _channels(2, first_share)}
    )

    table = drift_table(reference, batch, FEATURES, THRESHOLDS).set_index("feature")

    assert table["status"].to_dict() == statuses
    for name, status in statuses.items():
        if status == "drift":
            assert table.loc[name, "psi"] >= THRESHOLDS.psi_alert
            assert table.loc[name, "p_value"] < THRESHOLDS.p_value
        else:
            assert table.loc[name, "psi"] < THRESHOLDS.psi_warn
    assert table.loc["amount", "test"] == "kolmogorov-smirnov"
    assert table.loc["channel", "test"] == "chi-squared"


def test_drift_table_lists_the_most_shifted_feature_first() -> None:
    reference = pd.DataFrame({"amount": _amounts(1), "channel": _channels(1)})
    batch = pd.DataFrame({"amount": _amounts(2, 0.5), "channel": _channels(2, 0.4)})

    table = drift_table(reference, batch, FEATURES, THRESHOLDS)

    assert table["psi"].is_monotonic_decreasing
    assert set(table["feature"]) == {"amount", "channel"}


@pytest.mark.parametrize(
    ("target_psi", "rows", "status"),
    [(0.30, 4000, "drift"), (0.30, 40, "watch"), (0.15, 4000, "watch"), (0.05, 4000, "stable")],
    ids=["large-and-significant", "large-but-few-rows", "moderate", "small"],
)
def test_drift_needs_both_a_large_psi_and_a_significant_test(target_psi, rows, status) -> None:
    # One of two equal categories gains just enough share to give the PSI wanted.
    batch_pos = int(round(_share_for_psi(target_psi) * rows))
    reference = pd.DataFrame({"channel": ["pos", "atm"] * (rows // 2), "amount": 1.0})
    batch = pd.DataFrame(
        {"channel": ["pos"] * batch_pos + ["atm"] * (rows - batch_pos), "amount": 1.0}
    )

    table = drift_table(reference, batch, FEATURES, THRESHOLDS).set_index("feature")

    assert table.loc["channel", "psi"] == pytest.approx(target_psi, abs=0.03)
    assert table.loc["channel", "status"] == status
    if rows == 40:
        assert table.loc["channel", "p_value"] >= THRESHOLDS.p_value
    assert table.loc["amount", "status"] == "stable"


def _share_for_psi(target: float) -> float:
    """The share of one of two equal categories that gives ``target`` PSI (by bisection)."""
    low, high = 0.5, 0.999
    for _ in range(60):
        middle = (low + high) / 2
        value = psi(pd.Series({"a": 0.5, "b": 0.5}), pd.Series({"a": middle, "b": 1 - middle}))
        low, high = (middle, high) if value < target else (low, middle)
    return low


def test_unseen_categories_share_one_bin() -> None:
    reference = pd.Series(["pos", "atm"] * 500)
    two_unseen = pd.Series(["pos"] * 500 + ["kiosk"] * 250 + ["drone"] * 250)
    one_unseen = pd.Series(["pos"] * 500 + ["kiosk"] * 500)

    pooled = feature_drift(reference, two_unseen, categorical=True)
    single = feature_drift(reference, one_unseen, categorical=True)

    assert math.isfinite(pooled["psi"])
    assert pooled["psi"] == pytest.approx(single["psi"])
    assert pooled["psi"] >= THRESHOLDS.psi_alert
    assert pooled["p_value"] < THRESHOLDS.p_value


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_categories_are_a_bin_of_their_own(missing) -> None:
    reference = pd.Series(["pos", "atm"] * 450 + [None] * 100, dtype=object)
    same_share = pd.Series(["atm", "pos"] * 450 + [missing] * 100, dtype=object)
    more_missing = pd.Series(["pos", "atm"] * 300 + [missing] * 400, dtype=object)

    assert feature_drift(reference, same_share, categorical=True)["psi"] == pytest.approx(0.0)
    drifted = feature_drift(reference, more_missing, categorical=True)
    assert math.isfinite(drifted["psi"])
    assert drifted["psi"] >= THRESHOLDS.psi_alert


def test_missing_numbers_are_a_bin_of_their_own() -> None:
    reference = _amounts(1)
    with_gaps = reference.copy()
    with_gaps.iloc[: ROWS // 3] = np.nan

    assert feature_drift(with_gaps, with_gaps, categorical=False)["psi"] == 0.0
    gaps_appear = feature_drift(reference, with_gaps, categorical=False)
    assert math.isfinite(gaps_appear["psi"])
    assert gaps_appear["psi"] >= THRESHOLDS.psi_alert
    all_missing = feature_drift(reference, pd.Series(np.nan, index=range(100)), categorical=False)
    assert math.isfinite(all_missing["psi"])
    assert all_missing["p_value"] == 1.0


# ---------------------------------------------------------------------------------------------
# Fraud-rate shift
# ---------------------------------------------------------------------------------------------


def _labels(rows: int, frauds: int) -> pd.Series:
    return pd.Series(np.r_[np.ones(frauds), np.zeros(rows - frauds)].astype("int8"))


@pytest.mark.parametrize(
    ("batch_frauds", "ratio", "shifted"),
    [(300, 3.0, True), (100, 1.0, False), (120, 1.2, False), (30, 0.3, True)],
    ids=["tripled", "unchanged", "up-a-fifth", "down-to-a-third"],
)
def test_fraud_rate_shift_flags_large_significant_changes(batch_frauds, ratio, shifted) -> None:
    reference = _labels(20_000, 400)  # 2%
    batch = _labels(5_000, batch_frauds)

    result = fraud_rate_shift(reference, batch, THRESHOLDS)

    assert result["available"] is True
    assert result["reference_rate"] == pytest.approx(0.02)
    assert result["batch_rate"] == pytest.approx(batch_frauds / 5_000)
    assert result["ratio"] == pytest.approx(ratio)
    assert result["shifted"] is shifted
    if shifted:
        assert result["p_value"] < THRESHOLDS.p_value


@pytest.mark.parametrize("batch", [None, pd.Series([], dtype="int8")], ids=["none", "empty"])
def test_fraud_rate_shift_without_labels_is_unavailable(batch) -> None:
    assert fraud_rate_shift(_labels(100, 5), batch, THRESHOLDS) == {"available": False}


# ---------------------------------------------------------------------------------------------
# Alerts and plots
# ---------------------------------------------------------------------------------------------


def _summary(recommended: bool) -> dict:
    return {
        "retraining_recommended": recommended,
        "reasons": ["amount (PSI 0.80)"] if recommended else [],
        "production_version": "v0002",
        "batch_rows": 1234,
    }


def test_drift_alerts_raise_one_alert_with_a_key_stable_per_batch() -> None:
    first = drift_alerts(_summary(True), "abc123")
    again = drift_alerts(_summary(True), "abc123")
    other_batch = drift_alerts(_summary(True), "def456")

    assert len(first) == 1
    alert = first[0]
    assert alert.kind == "drift"
    assert alert.key == "drift:abc123" == again[0].key
    assert other_batch[0].key == "drift:def456"
    assert alert.details["reasons"] == ["amount (PSI 0.80)"]
    assert alert.details["production_version"] == "v0002"
    assert alert.details["batch_rows"] == 1234


def test_drift_alerts_raise_nothing_when_retraining_is_not_recommended() -> None:
    assert drift_alerts(_summary(False), "abc123") == []


def test_features_to_plot_puts_drifting_features_first() -> None:
    table = pd.DataFrame(
        {
            "feature": ["stable_one", "watched_big", "drift_low", "drift_high", "watched_small"],
            "psi": [0.01, 0.9, 0.3, 0.5, 0.12],
            "status": ["stable", "watch", "drift", "drift", "watch"],
        }
    )

    assert features_to_plot(table) == [
        "drift_high",
        "drift_low",
        "watched_big",
        "watched_small",
        "stable_one",
    ]
    assert features_to_plot(table, limit=2) == ["drift_high", "drift_low"]


# ---------------------------------------------------------------------------------------------
# The monitor stage end to end
# ---------------------------------------------------------------------------------------------

REPORT_KEYS = {
    "production_version",
    "reference_rows",
    "batch_rows",
    "thresholds",
    "features",
    "drifting_features",
    "score_shift",
    "fraud_rate",
    "retraining_recommended",
    "reasons",
}


@pytest.fixture()
def no_alert_channels(monkeypatch) -> None:
    """An environment with no e-mail or webhook settings, so alerts stay in the outbox."""
    for name in [name for name in os.environ if name.startswith("FRAUDOPS_")]:
        monkeypatch.delenv(name)


def test_monitor_writes_the_drift_report_and_raises_one_alert_per_batch(
    retrained_project, no_alert_channels
) -> None:
    root = retrained_project
    registry = Registry(root)

    result = monitor(root, thresholds=THRESHOLDS, card_windows="1,7,30", seed=1)

    report = json.loads((root / DRIFT_REPORT).read_text())
    assert set(report) == REPORT_KEYS
    production = registry.card(registry.production())
    assert report["production_version"] == production["version"] == "v0002"
    assert report["reference_rows"] == production["training_rows"]
    assert report["batch_rows"] == len(pd.read_parquet(root / paths.SCORE_BATCH))
    features = production["features"]["numeric"] + production["features"]["categorical"]
    assert sorted(row["feature"] for row in report["features"]) == sorted(features)
    drifting = [row["feature"] for row in report["features"] if row["status"] == "drift"]
    assert report["drifting_features"] == drifting
    assert report["retraining_recommended"] is bool(report["reasons"])
    # The simulator makes card testing far more common after the history: the score batch's
    # fraud rate is well above the training rows' rate.
    assert report["fraud_rate"]["available"] is True
    assert report["fraud_rate"]["shifted"] is True
    assert any(reason.startswith("fraud rate") for reason in report["reasons"])
    assert len(result["reference_scores"]) == report["reference_rows"]
    assert len(result["batch_scores"]) == report["batch_rows"]

    outbox = "reports/alerts/outbox.jsonl"
    settings = {"outbox": outbox, "digest_cap": 50, "immediate_severity": "high"}
    first = raise_drift_alerts(root, result, **settings)
    second = raise_drift_alerts(root, result, **settings)

    assert first.added == 1
    assert second.added == 0
    events = [json.loads(line) for line in (root / outbox).read_text().splitlines()]
    created = [event for event in events if event.get("event") == "created"]
    assert len(created) == 1
    assert created[0]["key"] == f"drift:{file_md5(root / paths.SCORE_BATCH)}"
    assert created[0]["alert"]["kind"] == "drift"
    assert created[0]["alert"]["details"]["reasons"] == report["reasons"]
