"""Compliance rules (AML/KYC) evaluated on every transaction, whatever the model says.

Rules come from params as plain values, one section per kind (see :func:`rules_from_params`):

- large_transaction: one amount at or above ``threshold``.
- structuring: at least ``min_count`` transactions of one customer within ``window_hours``, each
  under ``threshold``, together over it.
- velocity: more than ``max_count`` transactions of one customer within ``window_minutes``.
- watchlist: the customer or the terminal is on the watchlist (see :func:`read_watchlist`).

Windows are trailing and point in time: a transaction's window holds the customer's
transactions in ``(time - window, time]`` that come no later than it in time order (history
first, then the batch in its own order on equal times), so a transaction never sees later ones.

Amounts are compared as given: every transaction is assumed to be in the one currency the
thresholds are written in. Convert amounts first when a batch mixes currencies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from fraudops.data import AMOUNT, CUSTOMER_ID, TERMINAL_ID, TIMESTAMP, TRANSACTION_ID

logger = logging.getLogger(__name__)

RULE_KINDS = ("large_transaction", "structuring", "velocity", "watchlist")
WATCHLIST_COLUMNS = ("entity", "id", "reason")
WATCHLIST_ENTITIES = {"customer": CUSTOMER_ID, "terminal": TERMINAL_ID}
# Rules that count a customer's earlier transactions, and so look back into the history.
_WINDOWED = ("structuring", "velocity")
FIRED_COLUMNS = (
    TRANSACTION_ID,
    "rule_id",
    "rule_kind",
    "reason",
    TIMESTAMP,
    CUSTOMER_ID,
    TERMINAL_ID,
    AMOUNT,
    "window_count",
    "window_total",
    "limit",
    "watchlist_reason",
)
# Sums over a window are rounded to this many decimals, so float noise never decides a boundary.
_TOTAL_DECIMALS = 6


@dataclass(frozen=True)
class Rule:
    """One compliance rule: its id, kind, a description for people, and its thresholds."""

    rule_id: str
    kind: str
    description: str
    settings: dict


class _Setting(NamedTuple):
    accepts: Callable[[object], bool]
    wanted: str


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: object) -> bool:
    return _is_number(value) and value > 0


def _whole_at_least(low: int) -> Callable[[object], bool]:
    return lambda value: _is_number(value) and float(value).is_integer() and value >= low


_POSITIVE = _Setting(_positive, "a number above 0")
_SETTINGS = {
    "large_transaction": {"threshold": _POSITIVE},
    "structuring": {
        "threshold": _POSITIVE,
        "window_hours": _POSITIVE,
        "min_count": _Setting(_whole_at_least(2), "a whole number of at least 2"),
    },
    "velocity": {
        "max_count": _Setting(_whole_at_least(1), "a whole number of at least 1"),
        "window_minutes": _POSITIVE,
    },
    "watchlist": {},
}
_OPTIONAL = {"watchlist": {"path": _Setting(lambda v: isinstance(v, str), "a file path")}}
_WHOLE = ("min_count", "max_count")


def rules_from_params(params: Mapping) -> list[Rule]:
    """Build the enabled rules from the ``rules`` section of the params.

    Args:
        params: One entry per rule kind, e.g. ``{"large_transaction": {"enabled": True,
            "id": "AML-01", "description": "...", "threshold": 10000}}``. A kind may also hold
            a list of such entries, for several rules of one kind.

    Returns:
        The enabled rules, in the order given. Disabled rules are left out unchecked.

    Raises:
        ValueError: Naming the rule and the setting that is missing or wrong.
    """
    if not isinstance(params, Mapping):
        raise ValueError(
            f"rules params must be a mapping of rule kind to settings, got {type(params).__name__}"
        )
    unknown = [kind for kind in params if kind not in RULE_KINDS]
    if unknown:
        raise ValueError(
            f"rules params name unknown rule kind(s) {', '.join(map(repr, unknown))}; "
            f"use {', '.join(RULE_KINDS)}"
        )

    rules = []
    for kind, value in params.items():
        sections = value if isinstance(value, list) else [value]
        for number, section in enumerate(sections):
            where = f"rules.{kind}" + (f"[{number}]" if isinstance(value, list) else "")
            rule = _rule_from_section(kind, section, where)
            if rule is not None:
                rules.append(rule)
    _require_unique_ids(rules)
    logger.info("loaded %d compliance rules: %s", len(rules), ", ".join(_names(rules)) or "none")
    return rules


def _rule_from_section(kind: str, section: object, where: str) -> Rule | None:
    if not isinstance(section, Mapping):
        raise ValueError(f"{where} must be a mapping of settings, got {section!r}")
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}: setting 'enabled' must be true or false, got {enabled!r}")
    if not enabled:
        return None

    rule_id, description = section.get("id"), section.get("description")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise ValueError(f"{where}: setting 'id' must be a non-empty text such as 'AML-01'")
    name = f"rule {rule_id} ({where})"
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"{name}: setting 'description' must say in words what the rule checks")
    return Rule(rule_id.strip(), kind, description.strip(), _thresholds(kind, section, name))


def _thresholds(kind: str, section: Mapping, name: str) -> dict:
    required, optional = _SETTINGS[kind], _OPTIONAL.get(kind, {})
    known = ("enabled", "id", "description", *required, *optional)
    extra = [key for key in section if key not in known]
    if extra:
        raise ValueError(
            f"{name}: unknown setting(s) {', '.join(map(repr, extra))}; a {kind} rule takes "
            f"{', '.join(known)}"
        )

    settings = {}
    for key, setting in {**required, **optional}.items():
        if key not in section:
            if key in required:
                raise ValueError(f"{name}: setting '{key}' is missing; give {setting.wanted}")
            continue
        if not setting.accepts(section[key]):
            raise ValueError(
                f"{name}: setting '{key}' must be {setting.wanted}, got {section[key]!r}"
            )
        settings[key] = int(section[key]) if key in _WHOLE else section[key]
    return settings


def _require_unique_ids(rules: list[Rule]) -> None:
    ids = pd.Series([rule.rule_id for rule in rules], dtype=object)
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        raise ValueError(
            f"rule id(s) {', '.join(map(repr, repeated))} are used by more than one rule; "
            "give every rule its own id"
        )


def _names(rules: list[Rule]) -> list[str]:
    return [f"{rule.rule_id} ({rule.kind})" for rule in rules]


def read_watchlist(path: str | Path) -> pd.DataFrame:
    """Read and check a screening watchlist CSV with columns entity, id and reason.

    Args:
        path: The CSV file. ``entity`` is ``customer`` or ``terminal``; ``id`` is matched
            against the transactions' customer_id or terminal_id as text.

    Returns:
        One row per listed entity; several reasons for one entity are joined with "; ".

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When a column is missing or a row is incomplete, naming the file lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"watchlist {path} does not exist; give the CSV (entity,id,reason) the "
            "watchlist rule screens against, or disable that rule"
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"watchlist {path} is empty; it needs the header entity,id,reason"
        ) from None
    except pd.errors.ParserError as error:
        raise ValueError(f"watchlist {path} is not a readable CSV: {error}") from None
    watchlist = check_watchlist(raw, f"watchlist {path}", from_file=True)
    logger.info("read %s watchlist entries from %s", f"{len(watchlist):,}", path)
    return watchlist


def check_watchlist(
    raw: pd.DataFrame, where: str = "watchlist", from_file: bool = False
) -> pd.DataFrame:
    """Check a watchlist frame and tidy it: stripped text, lower-case entity, one row per entity.

    Problems name CSV line numbers (header is line 1) when ``from_file``, else row positions.
    """
    missing = [column for column in WATCHLIST_COLUMNS if column not in raw.columns]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {', '.join(missing)}; the watchlist needs the columns "
            f"{', '.join(WATCHLIST_COLUMNS)} (found {', '.join(map(str, raw.columns))})"
        )
    frame = raw[list(WATCHLIST_COLUMNS)].fillna("").astype(str)
    frame = frame.apply(lambda column: column.str.strip())
    frame["entity"] = frame["entity"].str.lower()

    known_entity = frame["entity"].isin(list(WATCHLIST_ENTITIES))
    problems = {
        f"entity is not one of {', '.join(WATCHLIST_ENTITIES)}": ~known_entity,
        "id is empty": frame["id"].eq(""),
        "reason is empty": frame["reason"].eq(""),
    }
    found = [
        f"{problem} on {_rows(bad, from_file)}" for problem, bad in problems.items() if bad.any()
    ]
    if found:
        raise ValueError(f"{where} is not a valid watchlist: {'; '.join(found)}")
    joined = frame.groupby(["entity", "id"], sort=False)["reason"].agg(_join_unique)
    return joined.reset_index()


def _rows(bad: pd.Series, from_file: bool) -> str:
    numbers = (np.flatnonzero(bad.to_numpy()) + (2 if from_file else 0)).tolist()
    more = f" and {len(numbers) - 10:,} more" if len(numbers) > 10 else ""
    return f"{'line' if from_file else 'row'}(s) {', '.join(map(str, numbers[:10]))}{more}"


def _join_unique(reasons: pd.Series) -> str:
    return "; ".join(dict.fromkeys(reasons))


def evaluate_rules(
    batch: pd.DataFrame,
    rules: list[Rule],
    history: pd.DataFrame | None = None,
    watchlist: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Evaluate the compliance rules on a batch of transactions.

    Args:
        batch: Canonical transactions to check.
        rules: From :func:`rules_from_params`.
        history: Earlier transactions the windowed rules look back into; rows that share a
            transaction_id with the batch are ignored, and no history row is ever returned.
        watchlist: From :func:`read_watchlist`; needed when a watchlist rule is given.

    Returns:
        One row per transaction and rule that fired, in batch order then rule order, with
        the columns in ``FIRED_COLUMNS``: transaction_id, rule_id, rule_kind, a reason a
        person can read, the transaction's own values, and the values that triggered it.
    """
    _require_columns(batch, rules, "batch")
    windowed = [rule for rule in rules if rule.kind in _WINDOWED]
    if history is not None and windowed:
        _require_columns(history, windowed, "history")
    timeline = _customer_timeline(batch, history) if windowed else None
    if any(rule.kind == "watchlist" for rule in rules):
        watchlist = _usable_watchlist(watchlist, batch)

    fired = []
    for order, rule in enumerate(rules):
        positions, values = _EVALUATORS[rule.kind](rule, batch, timeline, watchlist)
        logger.info(
            "rule %s (%s) flagged %s of %s transactions",
            rule.rule_id,
            rule.kind,
            f"{len(positions):,}",
            f"{len(batch):,}",
        )
        fired.append(_fired_frame(batch, rule, positions, values).assign(_order=order))
    if not fired:
        return _fired_frame(batch, None, np.array([], dtype=int), {}).drop(columns="_position")
    table = pd.concat(fired, ignore_index=True)
    table = table.sort_values(["_position", "_order"], kind="stable", ignore_index=True)
    return table.drop(columns=["_position", "_order"])


def _require_columns(frame: pd.DataFrame, rules: list[Rule], where: str) -> None:
    for rule in rules:
        needs = (TRANSACTION_ID, TIMESTAMP, AMOUNT)
        needs += (CUSTOMER_ID,) if rule.kind in _WINDOWED else ()
        missing = [column for column in needs if column not in frame.columns]
        if missing:
            raise ValueError(
                f"{where} lacks column(s) {', '.join(missing)} needed by rule {rule.rule_id} "
                f"({rule.kind}); give canonical transactions or disable the rule"
            )
        if not pd.api.types.is_datetime64_any_dtype(frame[TIMESTAMP]):
            raise ValueError(
                f"{where}: column 'timestamp' has type {frame[TIMESTAMP].dtype}, not datetime; "
                "read the file with fraudops.data.read_transactions"
            )
        if rule.kind in _WINDOWED and frame[CUSTOMER_ID].isna().any():
            raise ValueError(
                f"{where}: {int(frame[CUSTOMER_ID].isna().sum()):,} rows lack a customer_id, "
                f"which rule {rule.rule_id} ({rule.kind}) groups by; fill or drop them"
            )


def _usable_watchlist(watchlist: pd.DataFrame | None, batch: pd.DataFrame) -> pd.DataFrame:
    if watchlist is None:
        raise ValueError(
            "a watchlist rule is enabled but no watchlist was given; pass "
            "watchlist=read_watchlist(path), or disable the watchlist rule"
        )
    watchlist = check_watchlist(watchlist)
    for entity, column in WATCHLIST_ENTITIES.items():
        if column not in batch.columns and watchlist["entity"].eq(entity).any():
            raise ValueError(
                f"the watchlist lists {entity}s but the batch has no column '{column}' to "
                "screen; give canonical transactions with that column"
            )
    return watchlist


def _large_transaction(rule, batch, timeline, watchlist):
    threshold = rule.settings["threshold"]
    positions = np.flatnonzero(batch[AMOUNT].to_numpy() >= threshold)
    amounts = batch[AMOUNT].iloc[positions]
    reason = "amount " + _money(amounts) + f" is at or above the threshold of {_plain(threshold)}"
    return positions, {"reason": reason.to_numpy(), "limit": threshold}


def _structuring(rule, batch, timeline, watchlist):
    threshold, window_hours = rule.settings["threshold"], rule.settings["window_hours"]
    window = pd.Timedelta(hours=window_hours)
    counts, totals = _trailing_windows(timeline, len(batch), window, below=threshold)
    met = (counts >= rule.settings["min_count"]) & (totals > threshold)
    positions = np.flatnonzero(met)
    count, total = counts[positions], totals[positions]
    reason = (
        _whole(count)
        + f" transactions by this customer within {_plain(window_hours)} h, each under "
        + f"{_plain(threshold)}, together "
        + _money(pd.Series(total))
    )
    values = {"reason": reason.to_numpy(), "window_count": count, "window_total": total}
    return positions, {**values, "limit": threshold}


def _velocity(rule, batch, timeline, watchlist):
    max_count, minutes = rule.settings["max_count"], rule.settings["window_minutes"]
    counts, totals = _trailing_windows(timeline, len(batch), pd.Timedelta(minutes=minutes))
    positions = np.flatnonzero(counts > max_count)
    count, total = counts[positions], totals[positions]
    reason = (
        _whole(count)
        + f" transactions by this customer within {_plain(minutes)} min, more than the "
        + f"limit of {max_count:,}, together "
        + _money(pd.Series(total))
    )
    values = {"reason": reason.to_numpy(), "window_count": count, "window_total": total}
    return positions, {**values, "limit": max_count}


def _watchlist(rule, batch, timeline, watchlist):
    sentences, reasons = [], []
    for entity, column in WATCHLIST_ENTITIES.items():
        listed = watchlist[watchlist["entity"] == entity].set_index("id")["reason"]
        if listed.empty:
            continue
        ids = _id_text(batch[column])
        reason = ids.map(listed)
        reasons.append(reason)
        sentences.append(f"{entity} " + ids + " is on the watchlist: " + reason)
    if not reasons:
        return np.array([], dtype=int), {}
    text, reason = _join_present(sentences), _join_present(reasons)
    positions = np.flatnonzero(text.notna().to_numpy())
    values = {"reason": text.iloc[positions], "watchlist_reason": reason.iloc[positions]}
    return positions, {key: value.to_numpy() for key, value in values.items()}


def _join_present(texts: list[pd.Series]) -> pd.Series:
    """Join aligned texts with "; ", skipping missing ones; missing where all are."""
    joined = texts[0]
    for text in texts[1:]:
        joined = (joined + "; " + text).fillna(joined).fillna(text)
    return joined


_EVALUATORS = {
    "large_transaction": _large_transaction,
    "structuring": _structuring,
    "velocity": _velocity,
    "watchlist": _watchlist,
}


def _id_text(ids: pd.Series) -> pd.Series:
    # Ids stored as floats (12.0) must still match the watchlist's "12".
    if pd.api.types.is_float_dtype(ids) and (ids.dropna() % 1 == 0).all():
        ids = ids.astype("Int64")
    return ids.astype(str).str.strip().reset_index(drop=True)


def _trailing_windows(
    timeline: pd.DataFrame, batch_rows: int, window: pd.Timedelta, below: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per batch row: count and total of the customer's transactions in its trailing window.

    With ``below``, only transactions under that amount count, and rows at or above it get 0.
    """
    if below is not None:
        timeline = timeline[timeline[AMOUNT] < below].reset_index(drop=True)
    customers = timeline["_customer"].to_numpy()
    times = timeline[TIMESTAMP].to_numpy("datetime64[ns]").view("int64")

    # Time ranks make (customer, rank) one sorted integer key; the window opens at the first
    # rank after time - window. Searching in time order keeps the binary searches fast.
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    ranks, opens = np.empty_like(order), np.empty_like(order)
    ranks[order] = np.searchsorted(ordered, ordered, side="left")
    opens[order] = np.searchsorted(ordered, ordered - window.value, side="right")
    width = len(times) + 1
    starts = np.searchsorted(customers * width + ranks, customers * width + opens, side="left")

    positions = np.arange(len(timeline))
    amounts = timeline[AMOUNT].to_numpy("float64")
    running = timeline[AMOUNT].groupby(customers).cumsum().to_numpy("float64")
    window_counts = positions - starts + 1
    window_totals = np.round(running - running[starts] + amounts[starts], _TOTAL_DECIMALS)

    counts, totals = np.zeros(batch_rows, dtype="int64"), np.zeros(batch_rows)
    rows = timeline["_batch_row"].to_numpy()
    in_batch = rows >= 0
    counts[rows[in_batch]] = window_counts[in_batch]
    totals[rows[in_batch]] = window_totals[in_batch]
    return counts, totals


def _customer_timeline(batch: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """History then batch, sorted by customer and time; ``_batch_row`` is -1 for history."""
    columns = [CUSTOMER_ID, TIMESTAMP, AMOUNT]
    parts = [batch[columns].assign(_batch_row=np.arange(len(batch)))]
    if history is not None:
        # The same transaction in both frames would count twice.
        earlier = history[~history[TRANSACTION_ID].isin(batch[TRANSACTION_ID])]
        parts.insert(0, earlier[columns].assign(_batch_row=-1))
    timeline = pd.concat(parts, ignore_index=True)

    customers = pd.factorize(timeline[CUSTOMER_ID], sort=True)[0].astype("int64")
    times = timeline[TIMESTAMP].to_numpy("datetime64[ns]")
    # lexsort is stable: on equal times history comes first, then the batch in its own order.
    order = np.lexsort((times, customers))
    return timeline.iloc[order].assign(_customer=customers[order]).reset_index(drop=True)


def _fired_frame(
    batch: pd.DataFrame, rule: Rule | None, positions: np.ndarray, values: dict
) -> pd.DataFrame:
    rows = batch.iloc[positions].reset_index(drop=True)
    empty = [None] * len(rows)
    frame = pd.DataFrame(
        {
            TRANSACTION_ID: rows[TRANSACTION_ID],
            "rule_id": pd.Series([rule.rule_id if rule else None] * len(rows), dtype=object),
            "rule_kind": pd.Series([rule.kind if rule else None] * len(rows), dtype=object),
            "reason": pd.Series(values.get("reason", empty), dtype=object),
            TIMESTAMP: rows[TIMESTAMP],
            CUSTOMER_ID: rows[CUSTOMER_ID] if CUSTOMER_ID in rows else pd.Series(empty),
            TERMINAL_ID: rows[TERMINAL_ID] if TERMINAL_ID in rows else pd.Series(empty),
            AMOUNT: rows[AMOUNT].astype("float64"),
            "window_count": pd.array(values.get("window_count", empty), dtype="Int64"),
            "window_total": pd.Series(values.get("window_total", empty), dtype="float64"),
            "limit": pd.Series([values.get("limit", np.nan)] * len(rows), dtype="float64"),
            "watchlist_reason": pd.Series(values.get("watchlist_reason", empty), dtype=object),
        },
        columns=list(FIRED_COLUMNS),
    )
    return frame.assign(_position=positions)


def _money(amounts: pd.Series) -> pd.Series:
    return amounts.map("{:,.2f}".format).astype(str).reset_index(drop=True)


def _whole(counts: np.ndarray) -> pd.Series:
    return pd.Series(counts, dtype="int64").map("{:,}".format).astype(str)


def _plain(number: float) -> str:
    """A threshold as people write it: 10,000 or 2,500.50 or 0.5."""
    if float(number).is_integer():
        return f"{int(number):,}"
    return f"{number:,.2f}" if number >= 1 else f"{number:g}"


def reasons_by_transaction(fired: pd.DataFrame) -> pd.DataFrame:
    """Gather the rules that fired per transaction, for an alert or a case file.

    Args:
        fired: From :func:`evaluate_rules`.

    Returns:
        One row per transaction, in order of first appearance: transaction_id, rules (the
        list of rule ids) and reasons ("AML-01: ...; AML-03: ...").
    """
    labelled = fired["rule_id"].astype(str) + ": " + fired["reason"].astype(str)
    grouped = fired.assign(labelled=labelled).groupby(TRANSACTION_ID, sort=False)
    table = grouped.agg(rules=("rule_id", list), reasons=("labelled", "; ".join))
    return table.reset_index()
