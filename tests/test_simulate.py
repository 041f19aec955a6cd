"""Tests of the seeded card-transaction simulator."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest

from fraudops.simulate import (
    CATEGORIES,
    CHANNELS,
    FRAUD_KINDS,
    PERIODS,
    TX_TYPES,
    SimulationConfig,
    simulate_transactions,
    split_periods,
    ulb_like_frame,
    write_simulated_data,
)

SMALL = SimulationConfig(
    seed=7, n_customers=300, n_terminals=200, history_days=14, new_days=7, score_days=7
)
MEDIUM = SimulationConfig(seed=11, history_days=56, new_days=21, score_days=7)
COLUMNS = [
    "transaction_id",
    "timestamp",
    "customer_id",
    "terminal_id",
    "amount",
    "channel",
    "tx_type",
    "merchant_category",
    "label",
    "fraud_kind",
    "period",
]


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate_transactions(SMALL, progress=False)


@pytest.fixture(scope="module")
def medium() -> pd.DataFrame:
    return simulate_transactions(MEDIUM, progress=False)


@pytest.fixture(scope="module")
def medium_periods(medium: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return split_periods(medium)


def _file_bytes(paths: dict) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in paths.items()}


def test_same_seed_gives_identical_frames(small: pd.DataFrame) -> None:
    again = simulate_transactions(SMALL, progress=False)
    pd.testing.assert_frame_equal(small, again)


def test_different_seed_gives_different_frames(small: pd.DataFrame) -> None:
    other = simulate_transactions(replace(SMALL, seed=8), progress=False)
    assert not small.equals(other)


def test_same_seed_writes_identical_bytes(tmp_path) -> None:
    first = write_simulated_data(SMALL, tmp_path / "a", progress=False)
    second = write_simulated_data(SMALL, tmp_path / "b", progress=False)
    assert set(first) == {"history", "new_batch", "score_batch", "score_labels"}
    assert _file_bytes(first) == _file_bytes(second)


def test_columns_and_dtypes(small: pd.DataFrame) -> None:
    assert list(small.columns) == COLUMNS
    assert small["timestamp"].dtype == "datetime64[ns]"
    for column in ["transaction_id", "customer_id", "terminal_id"]:
        assert small[column].dtype == np.int64
    assert small["amount"].dtype == np.float64
    assert small["label"].dtype == np.int8
    for column in ["channel", "tx_type", "merchant_category", "fraud_kind", "period"]:
        assert pd.api.types.is_string_dtype(small[column])
    assert list(small.index) == list(range(len(small)))


def test_categorical_values_come_from_their_vocabularies(small: pd.DataFrame) -> None:
    assert set(small["channel"].dropna()) <= set(CHANNELS)
    assert set(small["tx_type"]) <= set(TX_TYPES)
    assert set(small["merchant_category"].dropna()) <= set(CATEGORIES)
    assert set(small["fraud_kind"]) <= set(FRAUD_KINDS)
    assert set(small["period"]) == set(PERIODS)
    assert ((small["fraud_kind"] != "none") == (small["label"] == 1)).all()


def test_ids_unique_and_increasing(small: pd.DataFrame) -> None:
    ids = small["transaction_id"]
    assert ids.is_unique
    assert ids.is_monotonic_increasing


def test_timestamps_sorted_and_inside_period_days(small: pd.DataFrame) -> None:
    assert small["timestamp"].is_monotonic_increasing
    start = pd.Timestamp(SMALL.start)
    bounds = np.cumsum([0, SMALL.history_days, SMALL.new_days, SMALL.score_days])
    for name, first_day, end_day in zip(PERIODS, bounds[:-1], bounds[1:], strict=True):
        stamps = small.loc[small["period"] == name, "timestamp"]
        assert stamps.min() >= start + pd.Timedelta(days=int(first_day))
        assert stamps.max() < start + pd.Timedelta(days=int(end_day))


def test_daily_volume_matches_customer_rate(small: pd.DataFrame) -> None:
    per_day = len(small) / SMALL.n_days
    assert 0.8 * 1.5 * SMALL.n_customers < per_day < 1.2 * 1.5 * SMALL.n_customers


def test_amounts_non_negative_in_cents(small: pd.DataFrame) -> None:
    amounts = small["amount"]
    assert (amounts >= 0).all()
    assert np.allclose(amounts, amounts.round(2))


def test_overall_fraud_rate_is_realistic(medium: pd.DataFrame, medium_periods) -> None:
    assert 0.001 < medium["label"].mean() < 0.01
    assert 0.002 < medium_periods["history"]["label"].mean() < 0.008


def test_every_fraud_kind_present_in_history(medium_periods) -> None:
    kinds = set(medium_periods["history"]["fraud_kind"])
    assert kinds == set(FRAUD_KINDS)


def test_card_testing_more_common_after_history(medium_periods) -> None:
    def card_testing_share(frame: pd.DataFrame) -> float:
        fraud = frame[frame["label"] == 1]
        return (fraud["fraud_kind"] == "card_testing").mean()

    history = card_testing_share(medium_periods["history"])
    assert card_testing_share(medium_periods["new_batch"]) > 3 * history
    assert card_testing_share(medium_periods["score_batch"]) > 3 * history


def test_card_testing_bursts_are_tiny_online_and_quick(medium: pd.DataFrame) -> None:
    testing = medium[medium["fraud_kind"] == "card_testing"]
    tiny = testing[testing["amount"] <= 3.0]
    assert tiny["amount"].min() >= 0.5
    assert set(tiny["channel"].dropna()) == {"online"}
    bursts = tiny.groupby(["customer_id", tiny["timestamp"].dt.date])
    sizes = bursts.size()
    spans = bursts["timestamp"].agg(lambda stamps: stamps.max() - stamps.min())
    assert sizes.between(3, 16).all()
    assert (spans[sizes <= 8] < pd.Timedelta(minutes=10)).all()


def test_stolen_cards_spend_more_and_elsewhere(medium: pd.DataFrame) -> None:
    genuine = medium[medium["label"] == 0]
    stolen = medium[medium["fraud_kind"] == "stolen_card"]
    usual = genuine.groupby("customer_id")["amount"].median()
    assert (stolen["amount"] > stolen["customer_id"].map(usual)).mean() > 0.9

    # The owner's own terminals hardly ever show up in the fraudster's transactions.
    own = set(zip(genuine["customer_id"], genuine["terminal_id"], strict=True))
    pairs = zip(stolen["customer_id"], stolen["terminal_id"], strict=True)
    assert np.mean([pair in own for pair in pairs]) < 0.1


def test_stolen_cards_lean_to_night_and_online(medium: pd.DataFrame) -> None:
    def night_and_online(frame: pd.DataFrame) -> tuple[float, float]:
        return frame["timestamp"].dt.hour.lt(6).mean(), frame["channel"].eq("online").mean()

    genuine_night, genuine_online = night_and_online(medium[medium["label"] == 0])
    stolen_night, stolen_online = night_and_online(medium[medium["fraud_kind"] == "stolen_card"])
    assert stolen_night > 3 * genuine_night
    assert stolen_online > 2 * genuine_online


def test_compromised_terminals_carry_a_sizeable_fraud_share(medium: pd.DataFrame) -> None:
    compromised = medium[medium["fraud_kind"] == "compromised_terminal"]
    windows = compromised.groupby("terminal_id")["timestamp"].agg(["min", "max"])
    assert 0 < len(windows) < 0.05 * MEDIUM.n_terminals

    # Within each terminal's compromise window a sizeable share of its transactions is fraud.
    on_hit = medium.join(windows, on="terminal_id", how="inner")
    in_window = on_hit[on_hit["timestamp"].between(on_hit["min"], on_hit["max"])]
    assert in_window["fraud_kind"].eq("compromised_terminal").mean() > 0.3


def test_large_amounts_are_many_times_usual(medium: pd.DataFrame) -> None:
    usual = medium[medium["label"] == 0].groupby("customer_id")["amount"].median()
    large = medium[medium["fraud_kind"] == "large_amount"]
    assert (large["amount"] / large["customer_id"].map(usual)).median() > 5


def test_channel_follows_merchant_category(small: pd.DataFrame) -> None:
    online_retail = small[small["merchant_category"] == "online_retail"]
    assert online_retail["channel"].dropna().eq("online").all()
    fuel = small[small["merchant_category"] == "fuel"]
    assert not fuel["channel"].eq("online").any()
    cash = small[small["tx_type"] == "cash_withdrawal"]
    assert len(cash) > 0
    assert not cash["channel"].eq("online").any()


def test_missing_values_in_channel_and_category(medium: pd.DataFrame) -> None:
    assert 0.005 < medium["channel"].isna().mean() < 0.02
    assert 0.01 < medium["merchant_category"].isna().mean() < 0.03
    assert not medium.drop(columns=["channel", "merchant_category"]).isna().any().any()


def test_night_quieter_than_midday(small: pd.DataFrame) -> None:
    hours = small["timestamp"].dt.hour.value_counts()
    assert hours.reindex(range(1, 5), fill_value=0).mean() < 0.2 * hours[12]


def test_sunday_quieter_than_friday(medium: pd.DataFrame) -> None:
    weekdays = medium["timestamp"].dt.day_of_week.value_counts()
    assert weekdays[6] < 0.85 * weekdays[4]


def test_split_periods_partitions_the_log(small: pd.DataFrame) -> None:
    periods = split_periods(small)
    assert list(periods) == list(PERIODS)
    assert sum(len(frame) for frame in periods.values()) == len(small)
    for name, frame in periods.items():
        assert set(frame["period"]) == {name}
        assert list(frame.index) == list(range(len(frame)))


def test_split_periods_names_missing_column(small: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="period"):
        split_periods(small.drop(columns="period"))


def test_written_files_keep_score_labels_apart(tmp_path, small: pd.DataFrame) -> None:
    paths = write_simulated_data(SMALL, tmp_path, progress=False)
    history = pd.read_parquet(paths["history"])
    new_batch = pd.read_parquet(paths["new_batch"])
    score = pd.read_parquet(paths["score_batch"])
    labels = pd.read_parquet(paths["score_labels"])

    assert list(history.columns) == COLUMNS[:-1]
    assert list(new_batch.columns) == COLUMNS[:-1]
    assert {"label", "fraud_kind", "period"}.isdisjoint(score.columns)
    assert list(labels.columns) == ["transaction_id", "label", "fraud_kind"]
    assert labels["transaction_id"].tolist() == score["transaction_id"].tolist()
    assert len(history) + len(new_batch) + len(score) == len(small)


def test_write_logs_one_line_per_file(tmp_path, caplog) -> None:
    with caplog.at_level("INFO", logger="fraudops.simulate"):
        write_simulated_data(SMALL, tmp_path, progress=False)
    wrote = [record.getMessage() for record in caplog.records if "wrote" in record.getMessage()]
    assert len(wrote) == 4
    assert all("% fraud) to " in message for message in wrote)


def test_config_round_trips_through_a_params_dict() -> None:
    params = asdict(MEDIUM)
    assert all(type(value) in (int, float, str) for value in params.values())
    assert SimulationConfig(**params) == MEDIUM


@pytest.mark.parametrize(
    "change",
    [{"n_customers": 0}, {"history_days": 0}, {"stolen_cards_per_day": -1.0}, {"start": "soon"}],
)
def test_config_rejects_bad_values(change: dict) -> None:
    with pytest.raises(ValueError, match="SimulationConfig"):
        SimulationConfig(**change)


def test_ulb_like_frame_shape_and_classes() -> None:
    frame = ulb_like_frame(n_rows=5000, fraud_rate=0.002, seed=3)
    assert list(frame.columns) == ["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount", "Class"]
    assert len(frame) == 5000
    assert set(frame["Class"].unique()) == {0, 1}
    assert frame["Class"].sum() == 10
    assert frame["Time"].iloc[0] == 0
    assert frame["Time"].is_monotonic_increasing
    assert frame["Time"].max() <= 2 * 86_400
    assert (frame["Amount"] >= 0).all()


def test_ulb_like_frame_keeps_a_few_positives_and_is_seeded() -> None:
    tiny = ulb_like_frame(n_rows=200, fraud_rate=0.0, seed=1)
    assert tiny["Class"].sum() >= 3
    pd.testing.assert_frame_equal(ulb_like_frame(seed=5), ulb_like_frame(seed=5))
    assert not ulb_like_frame(seed=5).equals(ulb_like_frame(seed=6))


def test_ulb_like_frame_fraud_is_learnable_but_not_along_one_direction() -> None:
    frame = ulb_like_frame(n_rows=100_000, fraud_rate=0.01, seed=0)
    fraud, genuine = frame[frame["Class"] == 1], frame[frame["Class"] == 0]
    gap = fraud[["V4", "V10", "V12", "V1"]].mean() - genuine[["V4", "V10", "V12", "V1"]].mean()
    assert gap["V4"] > 0.4 and gap["V10"] < -0.4 and gap["V12"] < -0.4
    assert abs(gap["V1"]) < 0.2
    # V14 moves both ways and V17 away from zero on either side: the means hide them.
    assert abs(fraud["V14"].mean() - genuine["V14"].mean()) < 0.5
    assert (fraud["V14"].abs() > 2.5).mean() > 3 * (genuine["V14"].abs() > 2.5).mean()
    assert abs(fraud["V17"].mean()) < 0.5
    assert fraud["V17"].abs().mean() > 1.5 * genuine["V17"].abs().mean()
