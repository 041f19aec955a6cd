"""Point-in-time features and the train/test split.

Every feature of a transaction is computed from that transaction and from transactions
before it, never after: the same function serves training and scoring, and a batch to score
is given the history before it as context. Features built on fraud labels use only labels
old enough to be known when the transaction is scored (see ``label_delay_days``).
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
    TERMINAL_ID,
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
    terminal_windows: tuple[int, ...] = (),
    label_delay_days: float = 7,
) -> tuple[pd.DataFrame, FeatureSet]:
    """Add point-in-time features to ``transactions``.

    Args:
        transactions: Canonical transactions.
        card_windows: Trailing windows, in days, for the card's count and mean amount.
        context: Earlier transactions (for example the history before a batch to score),
            used only as the past of ``transactions``; no row of it is returned.
        terminal_windows: Windows, in days, for the terminal's count and fraud share,
            each ending ``label_delay_days`` before the transaction; empty for none.
        label_delay_days: Days until a transaction's label is known.

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

    if TERMINAL_ID in frame and terminal_windows:
        terminal = terminal_risk_features(frame, terminal_windows, label_delay_days, context)
        frame = frame.join(terminal)
        numeric += list(terminal.columns)

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


def terminal_risk_features(
    frame: pd.DataFrame,
    windows: tuple[int, ...],
    label_delay_days: float = 7,
    context: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The terminal's traffic and known fraud share before each transaction, vectorised.

    For each window of ``d`` days the window is ``[t - delay - d, t - delay)``: it ends
    ``label_delay_days`` before the transaction's time ``t``, because the labels of the last
    days are not known yet when the transaction is scored. ``terminal_count_{d}d`` counts the
    terminal's transactions in it; ``terminal_fraud_share_{d}d`` is the share of fraud among
    those of them with a label (0 when none has one). Rows without a label (no label column,
    or NaN, as in a batch being scored) count as traffic but never enter a share.
    """
    own = _terminal_rows(frame).assign(_own=True)
    if context is not None and len(context):
        own = pd.concat([_terminal_rows(context).assign(_own=False), own], ignore_index=False)
    order = own.sort_values([TERMINAL_ID, TIMESTAMP, TRANSACTION_ID], kind="stable")

    terminal = order[TERMINAL_ID].to_numpy()
    stamps = order[TIMESTAMP].to_numpy()
    labels = order[LABEL].to_numpy(dtype=float)
    block = np.cumsum(np.r_[True, terminal[1:] != terminal[:-1]])

    # Times as ranks among the distinct times, so one exact integer key orders every terminal's
    # rows after the previous terminal's, whatever the timestamps' resolution.
    distinct = np.unique(stamps)
    width = len(distinct) + 1
    key = block * width + np.searchsorted(distinct, stamps)
    # Integer running totals (with a leading zero) are exact, so a window's sums never carry
    # anything from rows outside it, of this terminal or of another.
    labelled = np.r_[0, np.cumsum(~np.isnan(labels))]
    frauds = np.r_[0, np.cumsum(np.nan_to_num(labels) == 1)]

    delay = pd.Timedelta(days=label_delay_days).to_timedelta64()
    end = _window_edge(key, block, width, distinct, stamps - delay)
    features = {}
    for days in windows:
        reach = delay + pd.Timedelta(days=days).to_timedelta64()
        start = _window_edge(key, block, width, distinct, stamps - reach)
        known = labelled[end] - labelled[start]
        features[f"terminal_count_{days}d"] = end - start
        features[f"terminal_fraud_share_{days}d"] = np.divide(
            frauds[end] - frauds[start], known, out=np.zeros(len(key)), where=known > 0
        )

    result = pd.DataFrame(features, index=order.index)
    result = result[order["_own"].to_numpy()]
    return result.loc[frame.index]


def _terminal_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[[TRANSACTION_ID, TERMINAL_ID, TIMESTAMP]]
    labels = pd.to_numeric(frame.get(LABEL, pd.Series(np.nan, index=frame.index)))
    return rows.assign(**{LABEL: labels.astype("Float64").to_numpy(float, na_value=np.nan)})


def _window_edge(key, block, width, distinct, edge) -> np.ndarray:
    # The position of the terminal's first row at or after ``edge``.
    return np.searchsorted(key, block * width + np.searchsorted(distinct, edge), side="left")


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
    terminal_windows: str = "1,7,30",
    label_delay_days: float = 7,
) -> Split:
    """The preprocess stage: features for the history, split into training and test files.

    Features are computed on the whole history in time order, so every row sees only its past;
    the split then picks rows. Writes ``data/processed/{train,test}.parquet`` and
    ``features.json`` (the feature set, the windows and label delay of the features, and the
    split's windows). ``terminal_windows`` empty leaves out the terminal features.
    """
    root = Path(root)
    history = read_canonical(root, paths.HISTORY)
    frame, feature_set = add_features(
        history,
        parse_windows(card_windows),
        terminal_windows=parse_windows(terminal_windows),
        label_delay_days=label_delay_days,
    )
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
    settings = {
        "card_windows": list(parse_windows(card_windows)),
        "terminal_windows": list(parse_windows(terminal_windows)),
        "label_delay_days": label_delay_days,
    }
    write_json_atomic(
        {"features": feature_set.to_dict(), "settings": settings, "split": description},
        root / paths.FEATURES,
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


def read_feature_settings(root) -> dict:
    """The windows and label delay the preprocess stage built the features with."""
    return json.loads((Path(root) / paths.FEATURES).read_text()).get("settings", {})


def terminal_settings(settings: dict | None) -> dict:
    """The terminal arguments of :func:`add_features` from recorded settings.

    Settings from before the terminal features (or none at all) give no terminal features, so
    older models keep getting the columns they were trained on.
    """
    settings = settings or {}
    return {
        "terminal_windows": tuple(settings.get("terminal_windows", ())),
        "label_delay_days": settings.get("label_delay_days", 7),
    }


def reach_days(card_windows: tuple[int, ...], settings: dict | None) -> float:
    """How many days back the features of a transaction can look."""
    terminal = terminal_settings(settings)
    longest = max(terminal["terminal_windows"], default=0)
    terminal_reach = longest + terminal["label_delay_days"] if longest else 0
    return max(max(card_windows, default=1), terminal_reach)


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
