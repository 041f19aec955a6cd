"""Point-in-time features and the train/test split.

Every feature of a transaction is computed from that transaction and from transactions
before it, never after: the same function serves training and scoring, and a batch to score
is given the history before it as context.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudops import paths
from fraudops.data import (
    AMOUNT,
    CUSTOMER_ID,
    LABEL,
    TIMESTAMP,
    TRANSACTION_ID,
    extra_columns,
    read_canonical,
    require_both_classes,
)
from fraudops.io import write_json_atomic, write_parquet_atomic

logger = logging.getLogger(__name__)

NIGHT_HOURS = (0, 6)  # a transaction between midnight and 6 am counts as at night
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class FeatureSet:
    """The model's input columns, by kind."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    def to_dict(self) -> dict[str, list[str]]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}


def parse_windows(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of window lengths in days, such as ``"1,7,30"``."""
    windows = tuple(int(part) for part in text.split(",") if part.strip())
    if any(window <= 0 for window in windows):
        raise ValueError(f"window lengths must be positive days, got {text!r}")
    return windows


def add_features(
    transactions: pd.DataFrame,
    card_windows: tuple[int, ...] = (1, 7, 30),
    context: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, FeatureSet]:
    """Add point-in-time features to ``transactions``.

    Args:
        transactions: Canonical transactions.
        card_windows: Trailing windows, in days, for the card's count and mean amount.
        context: Earlier transactions (for example the history before a batch to score),
            used only as the past of ``transactions``; no row of it is returned.

    Returns:
        ``transactions`` with feature columns added, in their original order, and the
        feature set the model should use.
    """
    frame = transactions.copy()
    frame["log_amount"] = np.log1p(frame[AMOUNT])
    frame = frame.join(time_features(frame[TIMESTAMP]))
    numeric = ["amount", "log_amount", "hour", "day_of_week", "is_weekend", "is_night"]

    if CUSTOMER_ID in frame and card_windows:
        card = card_history_features(frame, card_windows, context)
        frame = frame.join(card)
        numeric += list(card.columns)

    categorical, passthrough = extra_columns(transactions)
    numeric += [c for c in passthrough if c not in numeric]
    return frame, FeatureSet(tuple(numeric), categorical)


def time_features(stamps: pd.Series) -> pd.DataFrame:
    """Hour, day of week, weekend and night flags of each timestamp."""
    hour = stamps.dt.hour
    return pd.DataFrame(
        {
            "hour": hour.astype("int8"),
            "day_of_week": stamps.dt.day_of_week.astype("int8"),
            "is_weekend": (stamps.dt.day_of_week >= 5).astype("int8"),
            "is_night": ((hour >= NIGHT_HOURS[0]) & (hour < NIGHT_HOURS[1])).astype("int8"),
        },
        index=stamps.index,
    )


def card_history_features(
    frame: pd.DataFrame, windows: tuple[int, ...], context: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The card's behaviour up to and including each transaction, vectorised.

    For each window of ``d`` days: how many transactions the card made in the ``d`` days up to
    this one and their mean amount; then the amount's ratio to the longest window's mean, and
    the seconds since the card's previous transaction.
    """
    own = frame[[TRANSACTION_ID, CUSTOMER_ID, TIMESTAMP, AMOUNT]].assign(_own=True)
    if context is not None and len(context):
        past = context[[TRANSACTION_ID, CUSTOMER_ID, TIMESTAMP, AMOUNT]].assign(_own=False)
        own = pd.concat([past, own], ignore_index=False)
    order = own.sort_values([CUSTOMER_ID, TIMESTAMP, TRANSACTION_ID], kind="stable")

    card = order[CUSTOMER_ID].to_numpy()
    seconds = (order[TIMESTAMP].to_numpy().astype("datetime64[s]").astype("int64")).astype(float)
    amounts = order[AMOUNT].to_numpy(dtype=float)
    new_card = np.r_[True, card[1:] != card[:-1]]

    # One increasing key over all cards: each card's times shifted past the previous card's,
    # with a gap wider than any window, so a window never reaches into another card.
    span = seconds.max() - seconds.min() + (max(windows) + 1) * SECONDS_PER_DAY
    key = np.cumsum(new_card) * span + (seconds - seconds.min())
    position = np.arange(len(key))
    # Running sums restart on each card, so a card's sums never carry rounding from other
    # cards' (possibly later) amounts: a row's features depend on its own card's past only.
    running = pd.Series(amounts).groupby(np.cumsum(new_card)).cumsum().to_numpy()

    features = {}
    for days in windows:
        start = np.searchsorted(key, key - days * SECONDS_PER_DAY, side="left")
        count = position - start + 1
        total = running[position] - (running[start] - amounts[start])
        features[f"card_count_{days}d"] = count
        features[f"card_mean_amount_{days}d"] = total / count
    longest = f"card_mean_amount_{max(windows)}d"
    features["card_amount_ratio"] = amounts / np.maximum(features[longest], 0.01)
    gap = np.r_[np.nan, np.diff(seconds)]
    features["card_seconds_since_previous"] = np.where(new_card, np.nan, gap)

    result = pd.DataFrame(features, index=order.index)
    result = result[order["_own"].to_numpy()]
    return result.loc[frame.index]


@dataclass(frozen=True)
class Split:
    """Training and test rows, and the windows they come from."""

    train: pd.DataFrame
    test: pd.DataFrame
    description: dict


def out_of_time_split(
    frame: pd.DataFrame, train_days: float, delay_days: float, test_days: float
) -> Split:
    """Train on an earlier window, skip a gap as long as the label delay, test on the latest.

    The test window ends at the last transaction; the gap keeps out of training the
    transactions whose labels would not yet be known when the model is trained.
    """
    end = frame[TIMESTAMP].max()
    test_start = end - pd.Timedelta(days=test_days)
    train_end = test_start - pd.Timedelta(days=delay_days)
    train_start = train_end - pd.Timedelta(days=train_days)
    stamps = frame[TIMESTAMP]
    train = frame[(stamps >= train_start) & (stamps < train_end)]
    test = frame[stamps > test_start]
    _require_rows(train, "training window", frame)
    _require_rows(test, "test window", frame)
    description = {
        "method": "out_of_time",
        "train_start": str(train_start),
        "train_end": str(train_end),
        "test_start": str(test_start),
        "test_end": str(end),
    }
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), description)


def random_split(frame: pd.DataFrame, test_size: float, seed: int) -> Split:
    """The classic tutorial split: stratified random, ignoring time."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame, test_size=test_size, stratify=frame[LABEL], random_state=seed
    )
    train, test = train.sort_index(), test.sort_index()
    description = {"method": "random", "test_size": test_size, "seed": seed}
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), description)


def _require_rows(part: pd.DataFrame, name: str, frame: pd.DataFrame) -> None:
    if part.empty:
        raise ValueError(
            f"the {name} holds no transactions: the history runs from "
            f"{frame[TIMESTAMP].min()} to {frame[TIMESTAMP].max()}; shorten split.train_days, "
            f"split.delay_days or split.test_days"
        )


def build_datasets(
    root,
    *,
    method: str = "out_of_time",
    train_days: float = 56,
    delay_days: float = 7,
    test_days: float = 21,
    test_size: float = 0.2,
    seed: int = 42,
    card_windows: str = "1,7,30",
) -> Split:
    """The preprocess stage: features for the history, split into training and test files.

    Features are computed on the whole history in time order, so every row sees only its past;
    the split then picks rows. Writes ``data/processed/{train,test}.parquet`` and
    ``features.json`` (the feature set and the split's windows).
    """
    root = Path(root)
    history = read_canonical(root, paths.HISTORY)
    frame, feature_set = add_features(history, parse_windows(card_windows))
    if method == "out_of_time":
        split = out_of_time_split(frame, train_days, delay_days, test_days)
    elif method == "random":
        split = random_split(frame, test_size, seed)
    else:
        raise ValueError(f"unknown split.method {method!r}; use 'out_of_time' or 'random'")
    require_both_classes(split.train, f"{paths.HISTORY} (training window)")
    require_both_classes(split.test, f"{paths.HISTORY} (test window)")

    write_parquet_atomic(split.train, root / paths.TRAIN)
    write_parquet_atomic(split.test, root / paths.TEST)
    description = {
        **split.description,
        "train_rows": len(split.train),
        "test_rows": len(split.test),
    }
    write_json_atomic(
        {"features": feature_set.to_dict(), "split": description}, root / paths.FEATURES
    )
    logger.info(
        "split %s training rows (%.2f%% fraud) and %s test rows (%.2f%% fraud)",
        f"{len(split.train):,}",
        100 * split.train[LABEL].mean(),
        f"{len(split.test):,}",
        100 * split.test[LABEL].mean(),
    )
    return split


def read_feature_set(root) -> FeatureSet:
    """The feature set the preprocess stage chose."""
    stored = json.loads((Path(root) / paths.FEATURES).read_text())["features"]
    return FeatureSet(tuple(stored["numeric"]), tuple(stored["categorical"]))


def plot_split(history: pd.DataFrame, split: Split):
    """Daily transactions and frauds of the history, with the training and test windows shaded."""
    import matplotlib.pyplot as plt

    day = history[TIMESTAMP].dt.floor("D")
    figure, axis = plt.subplots(figsize=(11, 3.5))
    axis.plot(day.value_counts().sort_index(), color="grey", label="transactions per day")
    fraud_axis = axis.twinx()
    fraud_axis.plot(day[history[LABEL] == 1].value_counts().sort_index(), color="tab:red")
    fraud_axis.set_ylabel("frauds per day", color="tab:red")
    if split.description["method"] == "out_of_time":
        windows = split.description
        axis.axvspan(windows["train_start"], windows["train_end"], alpha=0.15, label="training")
        axis.axvspan(
            windows["test_start"],
            windows["test_end"],
            alpha=0.15,
            color="tab:orange",
            label="test",
        )
    axis.set(
        title="Out-of-time split: train, label-delay gap, test", ylabel="transactions per day"
    )
    axis.legend(loc="lower left")
    figure.tight_layout()
    return figure
