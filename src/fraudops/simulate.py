"""Seeded card-transaction simulator: the pipeline's built-in data source, no download needed.

Customers and terminals live on a 100 x 100 grid. Each day every customer makes a Poisson number
of transactions at terminals near home, with a daily and weekly rhythm. Four kinds of fraud are
laid on top, with state (stolen cards, compromised terminals) carried from day to day:

- stolen_card: for about two weeks a fraudster adds larger transactions far from home, more at
  night and online, while the owner's genuine transactions go on.
- compromised_terminal: for a few weeks a share of a terminal's transactions are fraud, with
  unchanged amounts, so only terminal-level risk reveals them.
- card_testing: a burst of tiny online amounts within minutes, sometimes followed by a larger
  one. Rare in the history, common later: the new kind a model trained on history misses.
- large_amount: one amount many times the card's usual.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fraudops.io import write_parquet_atomic

logger = logging.getLogger(__name__)

PERIODS = ("history", "new_batch", "score_batch")
CHANNELS = ("chip", "contactless", "swipe", "online")
TX_TYPES = ("purchase", "cash_withdrawal", "bill_payment")
FRAUD_KINDS = ("none", "stolen_card", "compromised_terminal", "card_testing", "large_amount")
CATEGORIES = (
    "grocery",
    "fuel",
    "restaurant",
    "travel",
    "electronics",
    "online_retail",
    "pharmacy",
    "entertainment",
)

GRID_SIZE = 100.0
SECONDS_PER_DAY = 86_400
ONLINE = CHANNELS.index("online")
CHIP = CHANNELS.index("chip")
PURCHASE = TX_TYPES.index("purchase")
CASH_WITHDRAWAL = TX_TYPES.index("cash_withdrawal")
ONLINE_RETAIL = CATEGORIES.index("online_retail")
STOLEN_CARD, COMPROMISED_TERMINAL, CARD_TESTING, LARGE_AMOUNT = range(1, 5)

# Per category: share of terminals, amount multiplier, channel mix, transaction-type mix.
CATEGORY_SHARE = np.array([0.22, 0.10, 0.18, 0.05, 0.07, 0.12, 0.10, 0.16])
CATEGORY_AMOUNT_FACTOR = np.array([1.0, 1.3, 0.8, 3.5, 2.5, 1.2, 0.6, 0.9])
CHANNEL_MIX = np.array(
    [  # chip, contactless, swipe, online
        [0.45, 0.45, 0.10, 0.00],
        [0.55, 0.25, 0.20, 0.00],
        [0.40, 0.45, 0.15, 0.00],
        [0.35, 0.10, 0.05, 0.50],
        [0.50, 0.20, 0.10, 0.20],
        [0.00, 0.00, 0.00, 1.00],
        [0.45, 0.45, 0.10, 0.00],
        [0.35, 0.35, 0.05, 0.25],
    ]
)
TX_TYPE_MIX = np.array(
    [  # purchase, cash_withdrawal, bill_payment
        [0.93, 0.07, 0.00],
        [0.98, 0.02, 0.00],
        [1.00, 0.00, 0.00],
        [0.92, 0.03, 0.05],
        [0.95, 0.00, 0.05],
        [0.85, 0.00, 0.15],
        [0.95, 0.00, 0.05],
        [0.85, 0.00, 0.15],
    ]
)

# Relative volume by hour of day, and by weekday (Monday first).
HOURLY_WEEKDAY = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0]
    + [6.5, 6.0, 4.5, 4.0, 4.5, 5.5, 6.5, 6.0, 4.5, 3.0, 1.5, 0.6]
)
HOURLY_WEEKEND = np.array(
    [0.6, 0.4, 0.3, 0.2, 0.1, 0.2, 0.4, 0.8, 1.5, 2.5, 3.5, 4.5]
    + [5.5, 6.0, 5.5, 5.0, 5.0, 5.5, 6.0, 6.0, 5.0, 4.0, 2.5, 1.2]
)
HOURLY_FRAUDSTER = np.array(
    [3.0, 3.5, 3.5, 3.0, 2.5, 2.0, 1.5, 1.5, 1.5, 2.0, 2.0, 2.5]
    + [2.5, 2.5, 2.0, 2.0, 2.0, 2.5, 2.5, 2.5, 2.5, 3.0, 3.0, 3.0]
)
WEEKDAY_VOLUME = np.array([0.95, 0.97, 1.0, 1.03, 1.15, 0.95, 0.70])


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulation; every field is a plain int, float or str for params files."""

    seed: int = 42
    n_customers: int = 2000
    n_terminals: int = 1000
    start: str = "2026-01-05"  # first day (a Monday)
    history_days: int = 91  # labelled history
    new_days: int = 28  # later labelled batch for retraining
    score_days: int = 14  # final batch to score
    mean_tx_per_day: float = 1.5  # average genuine transactions per customer and day
    terminal_radius: float = 5.0  # customers buy from terminals this close to home
    min_nearby_terminals: int = 3  # fall back to this many nearest terminals
    stolen_cards_per_day: float = 0.3
    stolen_card_days: int = 14
    stolen_card_tx_per_day: float = 1.2  # fraudster transactions per stolen card and day
    stolen_card_online_share: float = 0.5
    compromised_terminals_per_day: float = 0.12
    compromised_terminal_days: int = 21
    compromised_fraud_share: float = 0.5  # mean share of a compromised terminal's transactions
    large_amounts_per_day: float = 2.0
    card_testing_per_day_history: float = 0.1  # one burst every week or two
    card_testing_per_day_later: float = 1.5
    card_testing_follow_up_share: float = 0.4  # bursts followed by one larger amount
    missing_channel_share: float = 0.01
    missing_category_share: float = 0.02

    def __post_init__(self) -> None:
        if self.n_customers < 1 or self.n_terminals < 1:
            raise ValueError(
                f"SimulationConfig needs at least one customer and one terminal, got "
                f"n_customers={self.n_customers}, n_terminals={self.n_terminals}."
            )
        if self.history_days < 1 or self.new_days < 0 or self.score_days < 0:
            raise ValueError(
                f"SimulationConfig needs history_days >= 1 and new_days, score_days >= 0, got "
                f"{self.history_days}, {self.new_days}, {self.score_days}."
            )
        negative = [name for name, value in asdict(self).items() if _is_negative_number(value)]
        if negative:
            raise ValueError(f"SimulationConfig fields must not be negative: {negative}.")
        shares = [name for name in asdict(self) if name.endswith("_share")]
        above_one = [name for name in shares if getattr(self, name) > 1]
        if above_one:
            raise ValueError(f"SimulationConfig shares must lie in [0, 1]: {above_one}.")
        try:
            np.datetime64(self.start, "D")
        except ValueError as error:
            raise ValueError(
                f"SimulationConfig.start must be a date like '2026-01-05', got {self.start!r}."
            ) from error

    @property
    def n_days(self) -> int:
        """Number of simulated days over the three periods."""
        return self.history_days + self.new_days + self.score_days


def _is_negative_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


@dataclass(frozen=True)
class _Population:
    """Customers, terminals and which terminals each customer uses."""

    customer_xy: np.ndarray  # (n_customers, 2)
    log_amount: np.ndarray  # log of the customer's typical amount
    amount_spread: np.ndarray  # standard deviation of log amounts
    tx_rate: np.ndarray  # genuine transactions per day
    terminal_xy: np.ndarray  # (n_terminals, 2)
    terminal_category: np.ndarray  # category codes
    nearby_start: np.ndarray  # customer c uses nearby_flat[nearby_start[c]:nearby_start[c + 1]]
    nearby_flat: np.ndarray
    used_terminals: np.ndarray  # terminals near at least one customer

    @property
    def n_customers(self) -> int:
        return len(self.tx_rate)

    @property
    def n_terminals(self) -> int:
        return len(self.terminal_category)

    def typical_amount(self, customers: np.ndarray) -> np.ndarray:
        return np.exp(self.log_amount[customers])


@dataclass
class _FraudState:
    """Which cards and terminals are in fraudsters' hands, and until which day (exclusive)."""

    card_stolen_until: np.ndarray
    terminal_compromised_until: np.ndarray
    terminal_fraud_share: np.ndarray


def _make_population(rng: np.random.Generator, config: SimulationConfig) -> _Population:
    customer_xy = rng.uniform(0, GRID_SIZE, size=(config.n_customers, 2))
    log_amount = rng.normal(np.log(30.0), 0.5, size=config.n_customers)
    amount_spread = rng.uniform(0.35, 0.75, size=config.n_customers)
    # Gamma with shape 2 keeps most customers near the mean and a few very active ones.
    tx_rate = rng.gamma(2.0, config.mean_tx_per_day / 2.0, size=config.n_customers)
    terminal_xy = rng.uniform(0, GRID_SIZE, size=(config.n_terminals, 2))
    terminal_category = rng.choice(len(CATEGORIES), size=config.n_terminals, p=CATEGORY_SHARE)
    nearby_start, nearby_flat = _nearby_terminals(customer_xy, terminal_xy, config)
    used_terminals = np.unique(nearby_flat)
    return _Population(
        customer_xy,
        log_amount,
        amount_spread,
        tx_rate,
        terminal_xy,
        terminal_category,
        nearby_start,
        nearby_flat,
        used_terminals,
    )


def _nearby_terminals(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, config: SimulationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Terminals within the radius of each customer, or the nearest few, as offsets and ids."""
    min_count = min(config.min_nearby_terminals, len(terminal_xy))
    counts, flats = [], []

    # Chunks of customers keep the distance matrix small for large populations.
    for first in range(0, len(customer_xy), 2048):
        chunk = customer_xy[first : first + 2048]
        distance = np.linalg.norm(chunk[:, None, :] - terminal_xy[None, :, :], axis=2)
        near = distance <= config.terminal_radius
        short = np.flatnonzero(near.sum(axis=1) < max(min_count, 1))
        if len(short):
            nearest = np.argpartition(distance[short], min_count - 1, axis=1)[:, :min_count]
            near[short[:, None], nearest] = True
        counts.append(near.sum(axis=1))
        flats.append(np.nonzero(near)[1])

    nearby_start = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return nearby_start, np.concatenate(flats)


def _new_fraud_state(population: _Population) -> _FraudState:
    return _FraudState(
        card_stolen_until=np.zeros(population.n_customers, dtype=np.int64),
        terminal_compromised_until=np.zeros(population.n_terminals, dtype=np.int64),
        terminal_fraud_share=np.zeros(population.n_terminals),
    )


def _draw_codes(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One code per row of ``probabilities`` (n, k) by inverse CDF."""
    cumulative = np.cumsum(probabilities, axis=1)
    draws = rng.random(len(probabilities)) * cumulative[:, -1]
    codes = (draws[:, None] >= cumulative).sum(axis=1)
    return np.minimum(codes, probabilities.shape[1] - 1).astype(np.int8)


def _draw_seconds(rng: np.random.Generator, n: int, hourly: np.ndarray) -> np.ndarray:
    hours = rng.choice(24, size=n, p=hourly / hourly.sum())
    return hours * 3600 + rng.integers(0, 3600, size=n)


def _nearby_terminal(
    rng: np.random.Generator, population: _Population, customers: np.ndarray
) -> np.ndarray:
    start = population.nearby_start[customers]
    count = population.nearby_start[customers + 1] - start
    pick = (rng.random(len(customers)) * count).astype(np.int64)
    return population.nearby_flat[start + pick]


def _far_terminal(
    rng: np.random.Generator, population: _Population, customers: np.ndarray
) -> np.ndarray:
    """Of four random terminals, the one farthest from each customer's home."""
    candidates = rng.integers(0, population.n_terminals, size=(len(customers), 4))
    offset = population.terminal_xy[candidates] - population.customer_xy[customers][:, None, :]
    farthest = np.linalg.norm(offset, axis=2).argmax(axis=1)
    return candidates[np.arange(len(customers)), farthest]


def _online_terminal(rng: np.random.Generator, population: _Population, n: int) -> np.ndarray:
    online = np.flatnonzero(population.terminal_category == ONLINE_RETAIL)
    if len(online) == 0:
        online = np.arange(population.n_terminals)
    return rng.choice(online, size=n)


def _channels_and_types(
    rng: np.random.Generator, population: _Population, terminals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    category = population.terminal_category[terminals]
    channel = _draw_codes(rng, CHANNEL_MIX[category])
    tx_type = _draw_codes(rng, TX_TYPE_MIX[category])
    # Cash is never withdrawn online.
    channel[(tx_type == CASH_WITHDRAWAL) & (channel == ONLINE)] = CHIP
    return channel, tx_type


def _usual_amounts(
    rng: np.random.Generator,
    population: _Population,
    customers: np.ndarray,
    terminals: np.ndarray,
) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, size=len(customers)) * population.amount_spread[customers]
    factor = CATEGORY_AMOUNT_FACTOR[population.terminal_category[terminals]]
    return np.exp(population.log_amount[customers] + noise) * factor


def _batch(
    seconds: np.ndarray,
    customers: np.ndarray,
    terminals: np.ndarray,
    amounts: np.ndarray,
    channels: np.ndarray,
    tx_types: np.ndarray,
    kind: int,
) -> dict[str, np.ndarray]:
    return {
        "second": np.asarray(seconds, dtype=np.int64),
        "customer": np.asarray(customers, dtype=np.int64),
        "terminal": np.asarray(terminals, dtype=np.int64),
        "amount": np.asarray(amounts, dtype=np.float64),
        "channel": np.asarray(channels, dtype=np.int8),
        "tx_type": np.asarray(tx_types, dtype=np.int8),
        "kind": np.full(len(customers), kind, dtype=np.int8),
    }


def _genuine_transactions(
    rng: np.random.Generator, population: _Population, weekday: int
) -> dict[str, np.ndarray]:
    counts = rng.poisson(population.tx_rate * WEEKDAY_VOLUME[weekday])
    customers = np.repeat(np.arange(population.n_customers), counts)
    terminals = _nearby_terminal(rng, population, customers)
    channels, tx_types = _channels_and_types(rng, population, terminals)
    amounts = _usual_amounts(rng, population, customers, terminals)
    # Cash comes in multiples of ten.
    cash = tx_types == CASH_WITHDRAWAL
    amounts[cash] = np.maximum(10.0, np.round(amounts[cash] / 10.0) * 10.0)
    hourly = HOURLY_WEEKEND if weekday >= 5 else HOURLY_WEEKDAY
    seconds = _draw_seconds(rng, len(customers), hourly)
    return _batch(seconds, customers, terminals, amounts, channels, tx_types, kind=0)


def _steal_cards(
    rng: np.random.Generator, state: _FraudState, config: SimulationConfig, day: int
) -> None:
    free = np.flatnonzero(state.card_stolen_until <= day)
    n_new = min(rng.poisson(config.stolen_cards_per_day), len(free))
    cards = rng.choice(free, size=n_new, replace=False)
    spread = max(config.stolen_card_days // 4, 1)
    duration = config.stolen_card_days + rng.integers(-spread, spread + 1, size=n_new)
    state.card_stolen_until[cards] = day + np.maximum(duration, 1)


def _compromise_terminals(
    rng: np.random.Generator,
    state: _FraudState,
    population: _Population,
    config: SimulationConfig,
    day: int,
) -> None:
    # Only terminals someone uses are worth compromising.
    used = population.used_terminals
    free = used[state.terminal_compromised_until[used] <= day]
    n_new = min(rng.poisson(config.compromised_terminals_per_day), len(free))
    terminals = rng.choice(free, size=n_new, replace=False)
    spread = max(config.compromised_terminal_days // 3, 1)
    duration = config.compromised_terminal_days + rng.integers(-spread, spread + 1, size=n_new)
    state.terminal_compromised_until[terminals] = day + np.maximum(duration, 1)
    share = config.compromised_fraud_share * rng.uniform(0.6, 1.4, size=n_new)
    state.terminal_fraud_share[terminals] = np.clip(share, 0.0, 1.0)


def _stolen_card_transactions(
    rng: np.random.Generator,
    population: _Population,
    state: _FraudState,
    config: SimulationConfig,
    day: int,
) -> dict[str, np.ndarray]:
    stolen = np.flatnonzero(state.card_stolen_until > day)
    counts = rng.poisson(config.stolen_card_tx_per_day, size=len(stolen))
    customers = np.repeat(stolen, counts)
    n = len(customers)

    online = rng.random(n) < config.stolen_card_online_share
    terminals = np.where(
        online, _online_terminal(rng, population, n), _far_terminal(rng, population, customers)
    )
    channels, tx_types = _channels_and_types(rng, population, terminals)
    channels[online] = ONLINE
    tx_types[online] = PURCHASE
    boost = rng.uniform(2.5, 6.0, size=n) * rng.lognormal(0.0, 0.3, size=n)
    amounts = population.typical_amount(customers) * boost
    seconds = _draw_seconds(rng, n, HOURLY_FRAUDSTER)
    return _batch(seconds, customers, terminals, amounts, channels, tx_types, STOLEN_CARD)


def _mark_compromised_terminals(
    rng: np.random.Generator, state: _FraudState, batch: dict[str, np.ndarray], day: int
) -> None:
    terminals = batch["terminal"]
    active = state.terminal_compromised_until[terminals] > day
    hit = active & (rng.random(len(terminals)) < state.terminal_fraud_share[terminals])
    batch["kind"][hit] = COMPROMISED_TERMINAL


def _burst_seconds(rng: np.random.Generator, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Seconds of each burst's transactions: its start, then gaps of 5 to 60 seconds."""
    first = np.cumsum(sizes) - sizes
    gaps = rng.integers(5, 60, size=sizes.sum())
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first] - gaps[first], sizes)
    return np.repeat(starts, sizes) + elapsed


def _card_testing_transactions(
    rng: np.random.Generator, population: _Population, config: SimulationConfig, day: int
) -> dict[str, np.ndarray]:
    in_history = day < config.history_days
    rate = config.card_testing_per_day_history if in_history else config.card_testing_per_day_later
    n_bursts = rng.poisson(rate)
    cards = rng.integers(0, population.n_customers, size=n_bursts)
    terminals = _online_terminal(rng, population, n_bursts)
    # Leave room before midnight so a burst stays within its day.
    starts = rng.integers(0, SECONDS_PER_DAY - 1800, size=n_bursts)
    sizes = rng.integers(3, 9, size=n_bursts)
    tiny_seconds = _burst_seconds(rng, starts, sizes)
    tiny_amounts = rng.uniform(0.5, 3.0, size=sizes.sum())

    # Some fraudsters cash in on a card that passed the test.
    follow = rng.random(n_bursts) < config.card_testing_follow_up_share
    burst_end = tiny_seconds[np.cumsum(sizes) - 1]
    follow_seconds = burst_end[follow] + rng.integers(60, 600, size=follow.sum())
    boost = rng.uniform(3.0, 8.0, size=follow.sum())
    follow_amounts = population.typical_amount(cards[follow]) * boost

    customers = np.concatenate([np.repeat(cards, sizes), cards[follow]])
    n = len(customers)
    return _batch(
        seconds=np.concatenate([tiny_seconds, follow_seconds]),
        customers=customers,
        terminals=np.concatenate([np.repeat(terminals, sizes), terminals[follow]]),
        amounts=np.concatenate([tiny_amounts, follow_amounts]),
        channels=np.full(n, ONLINE),
        tx_types=np.full(n, PURCHASE),
        kind=CARD_TESTING,
    )


def _large_amount_transactions(
    rng: np.random.Generator, population: _Population, config: SimulationConfig
) -> dict[str, np.ndarray]:
    n = rng.poisson(config.large_amounts_per_day)
    customers = rng.integers(0, population.n_customers, size=n)
    terminals = _nearby_terminal(rng, population, customers)
    channels, tx_types = _channels_and_types(rng, population, terminals)
    amounts = population.typical_amount(customers) * rng.uniform(8.0, 20.0, size=n)
    seconds = _draw_seconds(rng, n, HOURLY_WEEKDAY)
    return _batch(seconds, customers, terminals, amounts, channels, tx_types, LARGE_AMOUNT)


def _simulate_day(
    rng: np.random.Generator,
    population: _Population,
    state: _FraudState,
    config: SimulationConfig,
    day: int,
) -> dict[str, np.ndarray]:
    weekday = int((np.datetime64(config.start, "D") + day).astype(object).weekday())
    _steal_cards(rng, state, config, day)
    _compromise_terminals(rng, state, population, config, day)

    genuine = _genuine_transactions(rng, population, weekday)
    _mark_compromised_terminals(rng, state, genuine, day)
    parts = [
        genuine,
        _stolen_card_transactions(rng, population, state, config, day),
        _card_testing_transactions(rng, population, config, day),
        _large_amount_transactions(rng, population, config),
    ]

    batch = {key: np.concatenate([part[key] for part in parts]) for key in genuine}
    order = np.argsort(batch["second"], kind="stable")
    batch = {key: values[order] for key, values in batch.items()}
    batch["day"] = np.full(len(order), day, dtype=np.int64)
    return batch


def _period_of_days(days: np.ndarray, config: SimulationConfig) -> np.ndarray:
    bounds = [config.history_days, config.history_days + config.new_days]
    return np.array(PERIODS, dtype=object)[np.searchsorted(bounds, days, side="right")]


def _with_missing(
    rng: np.random.Generator, codes: np.ndarray, names: tuple[str, ...], share: float
) -> np.ndarray:
    """Decode ``codes`` to names, leaving about ``share`` of them missing."""
    values = np.array(names, dtype=object)[codes]
    values[rng.random(len(codes)) < share] = None
    return values


def _to_frame(
    rng: np.random.Generator,
    batch: dict[str, np.ndarray],
    population: _Population,
    config: SimulationConfig,
) -> pd.DataFrame:
    dates = np.datetime64(config.start, "D") + batch["day"].astype("timedelta64[D]")
    timestamps = dates.astype("datetime64[s]") + batch["second"].astype("timedelta64[s]")
    category = population.terminal_category[batch["terminal"]]
    kind = batch["kind"]
    return pd.DataFrame(
        {
            "transaction_id": np.arange(len(kind), dtype=np.int64),
            "timestamp": timestamps.astype("datetime64[ns]"),
            "customer_id": batch["customer"],
            "terminal_id": batch["terminal"],
            "amount": np.round(np.maximum(batch["amount"], 0.0), 2),
            "channel": _with_missing(
                rng, batch["channel"], CHANNELS, config.missing_channel_share
            ),
            "tx_type": np.array(TX_TYPES, dtype=object)[batch["tx_type"]],
            "merchant_category": _with_missing(
                rng, category, CATEGORIES, config.missing_category_share
            ),
            "label": (kind > 0).astype(np.int8),
            "fraud_kind": np.array(FRAUD_KINDS, dtype=object)[kind],
            "period": _period_of_days(batch["day"], config),
        }
    )


def simulate_transactions(config: SimulationConfig, progress: bool = True) -> pd.DataFrame:
    """Simulate a labelled card-transaction log over the history, new and score periods.

    Args:
        config: Sizes, dates and fraud intensities; the seed fixes every draw.
        progress: Show a progress bar over the simulated days.

    Returns:
        One row per transaction, sorted by timestamp, with ids increasing over time and a
        ``period`` column (history / new_batch / score_batch).
    """
    rng = np.random.default_rng(config.seed)
    population = _make_population(rng, config)
    state = _new_fraud_state(population)

    days = [
        _simulate_day(rng, population, state, config, day)
        for day in tqdm(
            range(config.n_days), desc="simulating days", unit="day", disable=not progress
        )
    ]
    batch = {key: np.concatenate([day[key] for day in days]) for key in days[0]}
    transactions = _to_frame(rng, batch, population, config)

    logger.info(
        "simulated %s transactions over %d days (%.2f%% fraud)",
        f"{len(transactions):,}",
        config.n_days,
        100 * transactions["label"].mean(),
    )
    return transactions


def split_periods(transactions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a simulated log by its ``period`` column.

    Args:
        transactions: Output of :func:`simulate_transactions`.

    Returns:
        Frames under "history", "new_batch" and "score_batch" (all columns kept, index reset);
        a period with no days gives an empty frame.
    """
    if "period" not in transactions.columns:
        raise ValueError(
            f"split_periods needs a 'period' column; got columns {list(transactions.columns)}. "
            "Pass the frame returned by simulate_transactions."
        )
    unknown = set(transactions["period"].dropna().unique()) - set(PERIODS)
    if unknown:
        raise ValueError(f"split_periods found unknown periods {sorted(unknown)}; want {PERIODS}.")
    return {
        name: transactions[transactions["period"] == name].reset_index(drop=True)
        for name in PERIODS
    }


def _log_written(frame: pd.DataFrame, labels: pd.DataFrame, path: Path) -> None:
    fraud_share = 100 * labels["label"].mean() if len(labels) else 0.0
    logger.info("wrote %s transactions (%.2f%% fraud) to %s", f"{len(frame):,}", fraud_share, path)


def write_simulated_data(
    config: SimulationConfig, out_dir: str | Path, progress: bool = True
) -> dict[str, Path]:
    """Simulate and write the history, new batch, score batch and its labels as Parquet.

    Args:
        config: Simulation settings; the same config writes the same bytes.
        out_dir: Folder for ``history``, ``new_batch``, ``score_batch`` and ``score_labels``
            ``.parquet``; created if missing.
        progress: Show a progress bar over the simulated days.

    Returns:
        File name stem to written path.
    """
    out_dir = Path(out_dir)
    periods = split_periods(simulate_transactions(config, progress=progress))
    score = periods["score_batch"]
    frames = {
        "history": periods["history"].drop(columns="period"),
        "new_batch": periods["new_batch"].drop(columns="period"),
        "score_batch": score.drop(columns=["label", "fraud_kind", "period"]),
        "score_labels": score[["transaction_id", "label", "fraud_kind"]],
    }

    paths = {}
    for name, frame in frames.items():
        paths[name] = write_parquet_atomic(frame, out_dir / f"{name}.parquet")
        labels = score if name.startswith("score") else frame
        _log_written(frame, labels, paths[name])
    return paths


def ulb_like_frame(n_rows: int = 20000, fraud_rate: float = 0.0017, seed: int = 0) -> pd.DataFrame:
    """A frame shaped like the public ULB credit-card file, for tests, demos and benchmarks.

    Frauds follow three patterns, a third each, none of them a single linear direction: one
    pulls V10, V12 and V14 down; one pushes V4, V11 and V14 up; one moves V17 far from zero in
    either direction. One fraud in six follows none and looks like any other payment.

    Args:
        n_rows: Number of transactions.
        fraud_rate: Share of rows with ``Class`` 1; at least three positives are kept.
        seed: Seed of every draw.

    Returns:
        Columns ``Time`` (seconds since the first row, over two days), ``V1``..``V28``
        (PCA-like components), ``Amount`` and ``Class``.
    """
    if not 0 <= fraud_rate < 1:
        raise ValueError(f"ulb_like_frame fraud_rate must lie in [0, 1), got {fraud_rate}.")
    n_fraud = max(round(n_rows * fraud_rate), 3)
    if n_rows <= n_fraud:
        raise ValueError(f"ulb_like_frame needs more than {n_fraud} rows, got n_rows={n_rows}.")
    rng = np.random.default_rng(seed)

    time = np.sort(rng.uniform(0, 2 * SECONDS_PER_DAY, size=n_rows))
    is_fraud = np.zeros(n_rows, dtype=np.int64)
    frauds = rng.choice(n_rows, size=n_fraud, replace=False)
    is_fraud[frauds] = 1

    # Decreasing spread across components, as after PCA; frauds moved by their pattern.
    spread = np.linspace(1.6, 0.4, 28)
    components = rng.normal(0.0, 1.0, size=(n_rows, 28)) * spread
    pattern = rng.choice(4, size=n_fraud, p=[5 / 18, 5 / 18, 5 / 18, 1 / 6])
    strength = rng.uniform(0.8, 1.6, size=n_fraud)
    shifts = {0: {10: -2.5, 12: -3.0, 14: -3.5}, 1: {4: 2.5, 11: 2.5, 14: 3.0}}
    for kind, moves in shifts.items():
        rows = frauds[pattern == kind]
        for number, offset in moves.items():
            components[rows, number - 1] += offset * strength[pattern == kind]
    far = frauds[pattern == 2]
    sign = rng.choice([-1.0, 1.0], size=len(far))
    components[far, 16] = sign * rng.uniform(2.5, 4.5, size=len(far))

    amount = rng.lognormal(np.log(22.0), 1.2, size=n_rows)
    amount[frauds] = rng.lognormal(np.log(10.0), 1.6, size=n_fraud)
    frame = pd.DataFrame(components, columns=[f"V{i}" for i in range(1, 29)])
    frame.insert(0, "Time", time - time[0])
    frame["Amount"] = np.round(amount, 2)
    frame["Class"] = is_fraud
    return frame


def config_from(values: dict) -> SimulationConfig:
    """A :class:`SimulationConfig` from a mapping holding (at least) its fields by name.

    Notebooks pass their parameters (``globals()``) so each simulator setting arrives
    through papermill under its own name.
    """
    names = [field.name for field in fields(SimulationConfig)]
    return SimulationConfig(**{name: values[name] for name in names})
