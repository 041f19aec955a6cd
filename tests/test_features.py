"""Tests of the point-in-time features and the train/test split: no leakage from the future."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraudops import paths
from fraudops.features import (
    FeatureSet,
    add_features,
    build_datasets,
    card_history_features,
    out_of_time_split,
    parse_windows,
    random_split,
    read_feature_set,
    terminal_risk_features,
    time_features,
)
from fraudops.model import build_pipeline, fit, fraud_scores

CUT_DAY = 20  # the day after which the tests below change the log


def _cut(frame: pd.DataFrame) -> pd.Timestamp:
    return frame["timestamp"].min().normalize() + pd.Timedelta(days=CUT_DAY)


def _scale_later_amounts(frame: pd.DataFrame, after: pd.Series) -> pd.DataFrame:
    return frame.assign(amount=frame["amount"].where(~after, frame["amount"] * 7.5))


def _drop_later_rows(frame: pd.DataFrame, after: pd.Series) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return frame[~(after & (rng.random(len(frame)) < 0.4))]


def _add_later_rows(frame: pd.DataFrame, after: pd.Series) -> pd.DataFrame:
    # Copies of later rows, a few minutes on, on their own cards and on new ones.
    extra = frame[after].sample(n=500, random_state=1)
    extra = extra.assign(
        transaction_id=frame["transaction_id"].max() + 1 + np.arange(len(extra)),
        timestamp=extra["timestamp"] + pd.Timedelta(minutes=3),
        amount=extra["amount"] * 3,
    )
    extra.loc[extra.index[::2], "customer_id"] += 1_000_000
    extra.index = frame.index.max() + 1 + np.arange(len(extra))
    return pd.concat([frame, extra])


def _all_changes(frame: pd.DataFrame, after: pd.Series) -> pd.DataFrame:
    changed = _scale_later_amounts(frame, after)
    changed = _drop_later_rows(changed, after)
    return _add_later_rows(changed, after.loc[changed.index])


@pytest.mark.parametrize(
    "change", [_scale_later_amounts, _drop_later_rows, _add_later_rows, _all_changes]
)
def test_features_before_a_time_ignore_everything_after_it(history, change) -> None:
    cut = _cut(history)
    after = history["timestamp"] >= cut
    before = history.index[~after]
    original, feature_set = add_features(history)

    changed = change(history, after)
    recomputed, _ = add_features(changed)

    assert not changed.equals(history)
    columns = list(feature_set.all)
    pd.testing.assert_frame_equal(
        recomputed.loc[before, columns], original.loc[before, columns], check_exact=True
    )


def test_features_of_a_batch_with_context_equal_those_of_the_whole_log(history) -> None:
    cut = _cut(history)
    earlier = history[history["timestamp"] < cut]
    batch = history[history["timestamp"] >= cut]

    whole, feature_set = add_features(history)
    with_context, batch_set = add_features(batch, context=earlier)
    alone, _ = add_features(batch)

    assert batch_set == feature_set
    assert list(with_context.index) == list(batch.index)
    pd.testing.assert_frame_equal(with_context, whole.loc[batch.index], check_exact=True)
    # Without the context the batch's cards look new: their 30-day counts are lower.
    assert (alone["card_count_30d"] <= with_context["card_count_30d"]).all()
    assert (alone["card_count_30d"] < with_context["card_count_30d"]).mean() > 0.5


def test_feature_set_lists_every_added_column(history) -> None:
    frame, feature_set = add_features(history, card_windows=(2, 14))
    assert feature_set.categorical == ("channel", "tx_type", "merchant_category")
    assert feature_set.numeric[:6] == (
        "amount",
        "log_amount",
        "hour",
        "day_of_week",
        "is_weekend",
        "is_night",
    )
    assert "card_count_14d" in feature_set.numeric
    assert "card_mean_amount_30d" not in frame
    assert set(feature_set.all) <= set(frame.columns)
    assert FeatureSet(("a",), ("b",)).to_dict() == {"numeric": ["a"], "categorical": ["b"]}


def _hand_made() -> pd.DataFrame:
    day = pd.Timestamp("2026-01-05")  # a Monday
    rows = [
        # transaction id, card, time after day zero, amount
        (1, "A", pd.Timedelta(hours=0), 10.0),
        (2, "B", pd.Timedelta(hours=6), 100.0),
        (3, "A", pd.Timedelta(hours=12), 20.0),
        (4, "B", pd.Timedelta(hours=7), 50.0),
        (5, "A", pd.Timedelta(days=1, hours=6), 30.0),
        (6, "A", pd.Timedelta(days=9), 40.0),
        (7, "A", pd.Timedelta(days=10), 50.0),
    ]
    frame = pd.DataFrame(rows, columns=["transaction_id", "customer_id", "offset", "amount"])
    frame["timestamp"] = day + frame.pop("offset")
    return frame.set_index(pd.Index([10, 11, 12, 13, 14, 15, 16]))


# Expected features of each hand-made row, in the frame's order. A window of d days reaches
# back to and including a transaction exactly d days earlier.
HAND_MADE = {
    "card_count_1d": [1, 1, 2, 2, 2, 1, 2],
    "card_mean_amount_1d": [10, 100, 15, 75, 25, 40, 45],
    "card_count_7d": [1, 1, 2, 2, 3, 1, 2],
    "card_mean_amount_7d": [10, 100, 15, 75, 20, 40, 45],
    "card_count_30d": [1, 1, 2, 2, 3, 4, 5],
    "card_mean_amount_30d": [10, 100, 15, 75, 20, 25, 30],
    "card_amount_ratio": [1, 1, 20 / 15, 50 / 75, 1.5, 40 / 25, 50 / 30],
    "card_seconds_since_previous": [
        np.nan,
        np.nan,
        12 * 3600,
        3600,
        18 * 3600,
        7 * 86_400 + 18 * 3600,
        86_400,
    ],
}


@pytest.mark.parametrize("column", list(HAND_MADE))
def test_card_features_on_a_hand_made_example(column) -> None:
    frame = _hand_made()
    features = card_history_features(frame, (1, 7, 30))
    assert list(features.index) == list(frame.index)
    np.testing.assert_allclose(features[column], HAND_MADE[column], rtol=1e-12)


def test_card_features_with_context_see_the_earlier_rows() -> None:
    frame = _hand_made()
    earlier, later = frame.loc[[10, 11, 12, 13]], frame.loc[[14, 15, 16]]
    features = card_history_features(later, (1, 7, 30), context=earlier)
    assert features["card_count_30d"].tolist() == [3, 4, 5]
    assert features["card_seconds_since_previous"].iloc[0] == 18 * 3600


def _two_terminals() -> pd.DataFrame:
    day = pd.Timestamp("2026-01-05")
    rows = [
        # transaction id, terminal, days after day zero, label
        (1, "T1", 0.0, 1),  # a
        (7, "T2", 0.5, 0),  # g
        (2, "T1", 1.0, 0),  # b
        (3, "T1", 2.5, 1),  # c
        (8, "T2", 2.5, 0),  # h
        (4, "T1", 3.0, 0),  # d
        (9, "T2", 3.0, 1),  # i
        (5, "T1", 4.25, 0),  # e
        (6, "T1", 5.0, 0),  # f
    ]
    frame = pd.DataFrame(rows, columns=["transaction_id", "terminal_id", "days", "label"])
    frame["timestamp"] = day + pd.to_timedelta(frame.pop("days"), unit="D")
    return frame.set_index(pd.Index([20, 26, 21, 22, 27, 23, 28, 24, 25]))


# With a 2-day label delay, the window of d days of a transaction at t is [t - 2 - d, t - 2).
# Rows in the order of _two_terminals: a, g, b, c, h, d, i, e, f.
TWO_TERMINALS = {
    "terminal_count_1d": [0, 0, 0, 1, 0, 1, 1, 0, 1],
    "terminal_fraud_share_1d": [0, 0, 0, 1, 0, 1, 0, 0, 1],
    "terminal_count_5d": [0, 0, 0, 1, 0, 1, 1, 2, 3],
    "terminal_fraud_share_5d": [0, 0, 0, 1, 0, 1, 0, 1 / 2, 2 / 3],
}


@pytest.mark.parametrize("column", list(TWO_TERMINALS))
def test_terminal_features_on_a_hand_made_example(column) -> None:
    frame = _two_terminals()
    features = terminal_risk_features(frame, (1, 5), label_delay_days=2)
    assert list(features.index) == list(frame.index)
    np.testing.assert_allclose(features[column], TWO_TERMINALS[column], rtol=1e-12)


def test_terminal_window_ends_the_label_delay_before_the_transaction() -> None:
    frame = _two_terminals()
    features = terminal_risk_features(frame, (1, 5), label_delay_days=2)
    # e (day 4.25) reaches back to day 2.25: c's fraud at day 2.5 is inside the delay, unknown.
    assert features.loc[24, "terminal_count_5d"] == 2
    # d (day 3) ends its window at day 1, exclusive: b (day 1) is not in it, a (day 0) is.
    assert features.loc[23, "terminal_count_5d"] == 1
    # h (day 2.5) ends its window at day 0.5, exactly when g happened: g is not in it.
    assert features.loc[27, "terminal_count_5d"] == 0
    # Without a delay, c's fraud counts for e.
    undelayed = terminal_risk_features(frame, (5,), label_delay_days=0)
    assert undelayed.loc[24, "terminal_fraud_share_5d"] == pytest.approx(2 / 4)


def test_terminal_features_ignore_labels_within_the_delay_and_anything_later(history) -> None:
    delay = 7
    cut = _cut(history)
    recent = history["timestamp"] >= cut - pd.Timedelta(days=delay)
    before = history.index[history["timestamp"] < cut]
    original = terminal_risk_features(history, (1, 7, 30), delay)

    # Flip every label from the delay before the cut on, drop some later rows, add others.
    changed = history.assign(label=history["label"].where(~recent, 1 - history["label"]))
    changed = _drop_later_rows(changed, history["timestamp"] >= cut)
    changed = _add_later_rows(changed, changed["timestamp"] >= cut)
    recomputed = terminal_risk_features(changed, (1, 7, 30), delay)

    pd.testing.assert_frame_equal(recomputed.loc[before], original.loc[before], check_exact=True)
    later = history.index[history["timestamp"] >= cut + pd.Timedelta(days=delay + 1)]
    later = later.intersection(changed.index)
    share = "terminal_fraud_share_7d"
    assert (recomputed.loc[later, share] != original.loc[later, share]).mean() > 0.5


def test_unlabelled_rows_being_scored_never_change_fraud_shares(history) -> None:
    cut = _cut(history)
    earlier = history[history["timestamp"] < cut]
    batch = history[history["timestamp"] >= cut].drop(columns="label")
    windows = (1, 7, 30)
    scored = terminal_risk_features(batch, windows, 7, context=earlier)

    # More unlabelled rows on the batch's terminals, early in the batch: more traffic, same shares.
    extra = batch.head(400).assign(transaction_id=lambda f: f["transaction_id"] + 10_000_000)
    extra.index = batch.index.max() + 1 + np.arange(len(extra))
    crowded = terminal_risk_features(pd.concat([batch, extra]), windows, 7, context=earlier)
    shares = [f"terminal_fraud_share_{days}d" for days in windows]
    pd.testing.assert_frame_equal(crowded.loc[batch.index, shares], scored[shares])
    assert (crowded.loc[batch.index, "terminal_count_30d"] > scored["terminal_count_30d"]).any()

    # A label column of NaN means the same as none; a window after the context knows no fraud.
    blank = terminal_risk_features(batch.assign(label=np.nan), windows, 7, context=earlier)
    pd.testing.assert_frame_equal(blank, scored, check_exact=True)
    late = batch["timestamp"] >= cut + pd.Timedelta(days=8)
    assert (scored.loc[late, "terminal_fraud_share_1d"] == 0).all()
    assert (scored.loc[late, "terminal_count_1d"] > 0).mean() > 0.9


def test_terminal_features_of_a_batch_with_context_equal_those_of_the_whole_log(history) -> None:
    cut = _cut(history)
    earlier = history[history["timestamp"] < cut]
    batch = history[history["timestamp"] >= cut]
    settings = {"terminal_windows": (1, 7, 30), "label_delay_days": 7}

    whole, feature_set = add_features(history, **settings)
    with_context, batch_set = add_features(batch, context=earlier, **settings)
    alone, _ = add_features(batch, **settings)

    assert batch_set == feature_set
    pd.testing.assert_frame_equal(with_context, whole.loc[batch.index], check_exact=True)
    assert (alone["terminal_count_30d"] < with_context["terminal_count_30d"]).mean() > 0.5


def test_feature_set_lists_terminal_columns_only_when_asked(history) -> None:
    _, plain = add_features(history, (7,))
    frame, with_terminals = add_features(history, (7,), terminal_windows=(3,))
    assert with_terminals.numeric[: len(plain.numeric)] == plain.numeric
    added = set(with_terminals.numeric) - set(plain.numeric)
    assert added == {"terminal_count_3d", "terminal_fraud_share_3d"}
    assert added <= set(frame.columns)
    assert not any(name.startswith("terminal_") for name in plain.numeric)
    # Without terminal ids there is nothing to compute.
    _, no_ids = add_features(history.drop(columns="terminal_id"), (7,), terminal_windows=(3,))
    assert no_ids == plain


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-01-05 03:15", (3, 0, 0, 1)),  # Monday night
        ("2026-01-05 06:00", (6, 0, 0, 0)),  # night ends at six
        ("2026-01-10 23:59", (23, 5, 1, 0)),  # Saturday
        ("2026-01-11 00:00", (0, 6, 1, 1)),  # Sunday midnight
    ],
)
def test_time_features(stamp, expected) -> None:
    features = time_features(pd.Series(pd.to_datetime([stamp])))
    row = features.iloc[0]
    assert (row["hour"], row["day_of_week"], row["is_weekend"], row["is_night"]) == expected


@pytest.mark.parametrize(
    ("text", "windows"), [("1,7,30", (1, 7, 30)), (" 3 , 14 ", (3, 14)), ("", ())]
)
def test_parse_windows(text, windows) -> None:
    assert parse_windows(text) == windows


@pytest.mark.parametrize("text", ["0,7", "7,-1"])
def test_parse_windows_refuses_non_positive_days(text) -> None:
    with pytest.raises(ValueError, match="must be positive days"):
        parse_windows(text)


@pytest.mark.parametrize(
    ("train_days", "delay_days", "test_days"), [(20, 3, 10), (14, 7, 7), (25.5, 0.5, 3)]
)
def test_out_of_time_split_keeps_the_delay_between_windows(
    featured, train_days, delay_days, test_days
) -> None:
    frame = featured[0]
    split = out_of_time_split(frame, train_days, delay_days, test_days)
    windows = {key: pd.Timestamp(value) for key, value in split.description.items() if "_" in key}
    train, test = split.train["timestamp"], split.test["timestamp"]

    assert split.description["method"] == "out_of_time"
    assert test.min() - train.max() >= pd.Timedelta(days=delay_days)
    assert windows["test_end"] == frame["timestamp"].max()
    assert windows["test_end"] - windows["test_start"] == pd.Timedelta(days=test_days)
    assert windows["test_start"] - windows["train_end"] == pd.Timedelta(days=delay_days)
    assert windows["train_end"] - windows["train_start"] == pd.Timedelta(days=train_days)
    assert train.between(windows["train_start"], windows["train_end"], inclusive="left").all()
    assert (test > windows["test_start"]).all()
    # Every row of either window is picked: nothing inside a window is left out.
    in_train = frame["timestamp"].between(
        windows["train_start"], windows["train_end"], inclusive="left"
    )
    assert len(split.train) == in_train.sum()
    assert len(split.test) == (frame["timestamp"] > windows["test_start"]).sum()


@pytest.mark.parametrize(
    ("train_days", "delay_days", "test_days", "window"),
    [(20, 7, 60, "training window"), (10, 50, 3, "training window")],
)
def test_out_of_time_split_refuses_too_short_a_history(
    featured, train_days, delay_days, test_days, window
) -> None:
    with pytest.raises(ValueError, match=f"the {window} holds no transactions") as caught:
        out_of_time_split(featured[0], train_days, delay_days, test_days)
    assert "shorten split.train_days" in str(caught.value)


def test_out_of_time_split_refuses_an_empty_test_window(featured) -> None:
    # A zero-day test window holds nothing: test rows are those strictly after its start.
    with pytest.raises(ValueError, match="the test window holds no transactions"):
        out_of_time_split(featured[0], 10, 1, 0)


def test_random_split_is_stratified_and_seeded(featured) -> None:
    frame = featured[0]
    split = random_split(frame, test_size=0.25, seed=5)
    again = random_split(frame, test_size=0.25, seed=5)

    assert len(split.train) + len(split.test) == len(frame)
    assert abs(len(split.test) - 0.25 * len(frame)) <= 1
    assert abs(split.test["label"].mean() - frame["label"].mean()) < 0.002
    pd.testing.assert_frame_equal(split.test, again.test)
    assert split.description == {"method": "random", "test_size": 0.25, "seed": 5}


def _alter_after(history: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Change every row at or after ``start`` but the last (which anchors the test window)."""
    later = (history["timestamp"] >= start) & (history.index != history["timestamp"].idxmax())
    changed = history.copy()
    changed.loc[later, "amount"] = changed.loc[later, "amount"] * 4 + 1
    changed.loc[later[later].index[::5], "label"] = 1
    changed = changed.drop(index=later[later].index[1::7])
    extra = (
        history[later]
        .head(300)
        .assign(
            transaction_id=history["transaction_id"].max() + 1 + np.arange(300),
            timestamp=lambda f: f["timestamp"] + pd.Timedelta(seconds=30),
        )
    )
    return pd.concat([changed, extra], ignore_index=True)


def test_training_file_uses_nothing_from_after_the_training_window(
    project, split_settings
) -> None:
    train_bytes = (project / paths.TRAIN).read_bytes()
    test_bytes = (project / paths.TEST).read_bytes()
    described = json.loads((project / paths.FEATURES).read_text())
    feature_set = read_feature_set(project)
    probe = pd.read_parquet(project / paths.TEST)

    def scores() -> np.ndarray:
        train = pd.read_parquet(project / paths.TRAIN)
        pipeline = build_pipeline(feature_set, "logistic_regression", {"max_iter": 500}, seed=1)
        fit(pipeline, train, feature_set)
        return fraud_scores(pipeline, probe, feature_set).to_numpy()

    before = scores()
    history = pd.read_parquet(project / paths.HISTORY)
    train_end = pd.Timestamp(described["split"]["train_end"])
    _alter_after(history, train_end).to_parquet(project / paths.HISTORY, index=False)
    build_datasets(project, **split_settings)

    assert (project / paths.TEST).read_bytes() != test_bytes
    assert (project / paths.TRAIN).read_bytes() == train_bytes
    np.testing.assert_array_equal(scores(), before)


def test_build_datasets_writes_the_feature_set_and_windows(project, split_settings) -> None:
    described = json.loads((project / paths.FEATURES).read_text())
    train = pd.read_parquet(project / paths.TRAIN)
    test = pd.read_parquet(project / paths.TEST)

    assert described["split"]["train_rows"] == len(train)
    assert described["split"]["test_rows"] == len(test)
    assert pd.Timestamp(described["split"]["train_start"]) <= train["timestamp"].min()
    assert read_feature_set(project) == FeatureSet(
        tuple(described["features"]["numeric"]), tuple(described["features"]["categorical"])
    )
    assert set(read_feature_set(project).all) <= set(train.columns)


def test_build_datasets_records_the_terminal_features(project, split_settings) -> None:
    described = json.loads((project / paths.FEATURES).read_text())
    assert described["settings"] == {
        "card_windows": [1, 7, 30],
        "terminal_windows": [1, 7, 30],
        "label_delay_days": 7,
    }
    assert "terminal_fraud_share_30d" in described["features"]["numeric"]

    build_datasets(project, **split_settings, terminal_windows="", label_delay_days=3)
    described = json.loads((project / paths.FEATURES).read_text())
    assert described["settings"]["terminal_windows"] == []
    assert not any(name.startswith("terminal_") for name in described["features"]["numeric"])


def test_build_datasets_refuses_an_unknown_split(project) -> None:
    with pytest.raises(ValueError, match="unknown split.method 'k_fold'"):
        build_datasets(project, method="k_fold")
