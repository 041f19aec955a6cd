"""Tests of the compliance rules: exact results at each boundary, point in time, clear errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from fraudops.rules import (
    FIRED_COLUMNS,
    Rule,
    check_watchlist,
    evaluate_rules,
    read_watchlist,
    reasons_by_transaction,
    rules_from_params,
)
from fraudops.simulate import SimulationConfig, simulate_transactions

START = pd.Timestamp("2026-03-02 09:00")

PARAMS = {
    "large_transaction": {
        "enabled": True,
        "id": "AML-01",
        "description": "single transaction at or above the reporting threshold",
        "threshold": 10_000,
    },
    "structuring": {
        "id": "AML-02",
        "description": "amounts split to stay under the reporting threshold",
        "threshold": 10_000,
        "window_hours": 24,
        "min_count": 3,
    },
    "velocity": {
        "id": "AML-03",
        "description": "many transactions in a short time",
        "max_count": 3,
        "window_minutes": 10,
    },
    "watchlist": {"id": "KYC-01", "description": "customer or terminal on the watchlist"},
}


def rule(kind: str, **settings) -> Rule:
    section = {**PARAMS[kind], **settings}
    return rules_from_params({kind: section})[0]


def transactions(rows: list[tuple], first_id: int = 1) -> pd.DataFrame:
    """Transactions from (minutes after START, customer, amount) or (..., terminal) tuples."""
    minutes, customers, amounts, *rest = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "transaction_id": np.arange(first_id, first_id + len(rows)),
            "timestamp": START + pd.to_timedelta(np.array(minutes, dtype=float), unit="min"),
            "customer_id": np.array(customers, dtype="int64"),
            "terminal_id": np.array(rest[0] if rest else [7] * len(rows), dtype="int64"),
            "amount": np.array(amounts, dtype="float64"),
        }
    )


def fired_ids(fired: pd.DataFrame, rule_id: str | None = None) -> list[int]:
    chosen = fired if rule_id is None else fired[fired["rule_id"] == rule_id]
    return chosen["transaction_id"].tolist()


WATCHLIST = pd.DataFrame(
    {
        "entity": ["customer", "terminal", "Customer "],
        "id": ["5", "9", "6"],
        "reason": ["sanctions list match", "skimming device found", "PEP"],
    }
)


# rules_from_params


def test_params_give_the_enabled_rules_in_order_with_their_settings() -> None:
    params = {**PARAMS, "watchlist": {**PARAMS["watchlist"], "enabled": False}}

    rules = rules_from_params(params)

    assert [(r.rule_id, r.kind) for r in rules] == [
        ("AML-01", "large_transaction"),
        ("AML-02", "structuring"),
        ("AML-03", "velocity"),
    ]
    assert rules[1].settings == {"threshold": 10_000, "window_hours": 24, "min_count": 3}
    assert rules[1].description == "amounts split to stay under the reporting threshold"


def test_a_kind_may_hold_a_list_of_rules() -> None:
    fast = {**PARAMS["velocity"], "id": "AML-03a"}
    daily = {**PARAMS["velocity"], "id": "AML-03b", "max_count": 40, "window_minutes": 1440}

    rules = rules_from_params({"velocity": [fast, daily]})

    assert [r.rule_id for r in rules] == ["AML-03a", "AML-03b"]
    assert rules[1].settings == {"max_count": 40, "window_minutes": 1440}


def test_a_disabled_rule_is_left_out_without_checking_its_settings() -> None:
    params = {"structuring": {"enabled": False, "id": "AML-02", "threshold": -1}}

    assert rules_from_params(params) == []


def _with(kind: str, **changes) -> dict:
    section = {**PARAMS[kind], **changes}
    return {kind: {key: value for key, value in section.items() if value is not ...}}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"large_tx": {}}, ["unknown rule kind", "'large_tx'", "structuring"]),
        (_with("large_transaction", id=...), ["rules.large_transaction", "'id'"]),
        (_with("large_transaction", description=""), ["rule AML-01", "'description'"]),
        (_with("large_transaction", threshold=...), ["rule AML-01", "'threshold' is missing"]),
        (_with("large_transaction", threshold=-5), ["rule AML-01", "'threshold'", "-5"]),
        (_with("large_transaction", threshold="1e4"), ["'threshold'", "above 0", "'1e4'"]),
        (_with("large_transaction", threshold=True), ["'threshold'", "True"]),
        (_with("large_transaction", treshold=5), ["rule AML-01", "unknown setting", "treshold"]),
        (_with("structuring", min_count=1), ["rule AML-02", "'min_count'", "at least 2"]),
        (_with("structuring", min_count=2.5), ["rule AML-02", "'min_count'", "2.5"]),
        (_with("structuring", window_hours=0), ["rule AML-02", "'window_hours'"]),
        (_with("velocity", max_count=0), ["rule AML-03", "'max_count'", "at least 1"]),
        (_with("velocity", window_minutes=float("nan")), ["'window_minutes'", "nan"]),
        (_with("velocity", enabled="yes"), ["rules.velocity", "'enabled'", "true or false"]),
        ({"velocity": [PARAMS["velocity"], 3]}, ["rules.velocity[1]", "mapping"]),
        ({**PARAMS, "velocity": {**PARAMS["velocity"], "id": "AML-01"}}, ["'AML-01'", "own id"]),
        ([PARAMS], ["mapping of rule kind"]),
    ],
)
def test_bad_params_name_the_rule_and_the_setting(params, expected: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        rules_from_params(params)

    for fragment in expected:
        assert fragment in str(raised.value)


def test_whole_number_settings_given_as_floats_become_ints() -> None:
    assert rule("structuring", min_count=3.0).settings["min_count"] == 3


# large_transaction


@pytest.mark.parametrize(
    ("amount", "fires"), [(9_999.99, False), (10_000.0, True), (10_000.01, True)]
)
def test_large_transaction_fires_at_or_above_the_threshold(amount: float, fires: bool) -> None:
    batch = transactions([(0, 1, amount)])

    fired = evaluate_rules(batch, [rule("large_transaction")])

    assert fired_ids(fired) == ([1] if fires else [])


def test_large_transaction_reason_and_values() -> None:
    batch = transactions([(0, 1, 25.0), (5, 2, 12_500.0)])

    fired = evaluate_rules(batch, [rule("large_transaction")])

    assert list(fired.columns) == list(FIRED_COLUMNS)
    row = fired.iloc[0]
    assert (row["transaction_id"], row["rule_id"], row["rule_kind"]) == (
        2,
        "AML-01",
        "large_transaction",
    )
    assert row["reason"] == "amount 12,500.00 is at or above the threshold of 10,000"
    assert (row["amount"], row["limit"], row["customer_id"]) == (12_500.0, 10_000.0, 2)


# structuring


def test_structuring_fires_on_the_transaction_completing_the_pattern_and_later_ones() -> None:
    batch = transactions(
        [
            (0, 1, 4_000.0),
            (60, 1, 3_000.0),
            (120, 1, 3_500.0),  # third under 10,000 within 24 h, together 10,500: fires
            (180, 2, 9_000.0),  # another customer
            (600, 1, 200.0),  # later in the window: four together 10,700
        ]
    )

    fired = evaluate_rules(batch, [rule("structuring")])

    assert fired_ids(fired) == [3, 5]
    assert fired["window_count"].tolist() == [3, 4]
    assert fired["window_total"].tolist() == [10_500.0, 10_700.0]
    assert fired["reason"].iloc[0] == (
        "3 transactions by this customer within 24 h, each under 10,000, together 10,500.00"
    )


@pytest.mark.parametrize(
    ("rows", "case"),
    [
        ([(0, 1, 4_000.0), (60, 1, 3_000.0), (120, 1, 3_000.0)], "total exactly at threshold"),
        ([(0, 1, 6_000.0), (60, 1, 5_000.0)], "two, fewer than min_count"),
        ([(0, 1, 10_000.0), (60, 1, 3_000.0), (120, 1, 3_000.0)], "one not under threshold"),
        ([(0, 1, 4_000.0), (60, 1, 3_000.0), (1_440, 1, 3_500.0)], "first exactly 24 h back"),
        ([(0, 1, 4_000.0), (60, 2, 3_000.0), (120, 3, 3_500.0)], "three customers"),
    ],
)
def test_structuring_does_not_fire_short_of_the_pattern(rows: list[tuple], case: str) -> None:
    fired = evaluate_rules(transactions(rows), [rule("structuring")])

    assert fired.empty, case


def test_structuring_with_amounts_summing_exactly_to_threshold_is_not_fooled_by_floats() -> None:
    rows = [(0, 1, 4.11), (1, 1, 4.74), (2, 1, 1.25)]  # in floats, sums to 10.100000000000001

    fired = evaluate_rules(transactions(rows), [rule("structuring", threshold=10.1)])

    assert fired.empty


def test_structuring_split_between_history_and_batch_fires_only_with_history() -> None:
    history = transactions([(0, 1, 4_000.0), (60, 1, 3_000.0)], first_id=1)
    batch = transactions([(120, 1, 3_500.0), (130, 2, 50.0)], first_id=3)
    rules = [rule("structuring")]

    without = evaluate_rules(batch, rules)
    with_history = evaluate_rules(batch, rules, history=history)

    assert without.empty
    assert fired_ids(with_history) == [3]
    assert with_history["window_total"].tolist() == [10_500.0]


def test_history_rows_are_never_returned_and_shared_rows_count_once() -> None:
    history = transactions([(0, 1, 20_000.0), (60, 1, 4_000.0), (70, 1, 3_000.0)])
    # The batch repeats history's last row (id 3): counted once, the pattern stays short.
    batch = pd.concat([history.iloc[[2]], transactions([(80, 1, 2_000.0)], first_id=4)])
    rules = [rule("large_transaction"), rule("structuring")]

    fired = evaluate_rules(batch, rules, history=history)

    assert fired.empty


# velocity


def test_velocity_fires_only_above_max_count() -> None:
    rows = [(0, 1, 5.0), (2, 1, 5.0), (4, 1, 5.0), (6, 1, 5.0), (7, 2, 5.0)]

    fired = evaluate_rules(transactions(rows), [rule("velocity")])

    assert fired_ids(fired) == [4]
    assert fired["window_count"].tolist() == [4]
    assert fired["reason"].iloc[0] == (
        "4 transactions by this customer within 10 min, more than the limit of 3, together 20.00"
    )


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        ([0, 2, 4], []),  # exactly max_count
        ([0, 4, 6, 10], []),  # the first is exactly 10 min before the fourth: outside
        ([0, 4, 6, 9.99], [4]),
        ([0, 0, 0, 0], [4]),  # equal times: each sees only those before it in the batch
    ],
)
def test_velocity_window_boundaries(minutes: list[float], expected: list[int]) -> None:
    batch = transactions([(minute, 1, 5.0) for minute in minutes])

    fired = evaluate_rules(batch, [rule("velocity")])

    assert fired_ids(fired) == expected


def test_velocity_looks_back_into_history() -> None:
    history = transactions([(0, 1, 5.0), (1, 1, 5.0), (2, 1, 5.0), (-30, 1, 5.0)])
    batch = transactions([(3, 1, 5.0), (3, 2, 5.0)], first_id=10)

    fired = evaluate_rules(batch, [rule("velocity")], history=history)

    assert fired_ids(fired) == [10]
    assert fired["window_count"].tolist() == [4]


# watchlist


def test_watchlist_screens_customers_and_terminals() -> None:
    batch = transactions([(0, 5, 10.0, 1), (1, 2, 10.0, 9), (2, 6, 10.0, 9), (3, 2, 10.0, 1)])

    fired = evaluate_rules(batch, [rule("watchlist")], watchlist=WATCHLIST)

    assert fired_ids(fired) == [1, 2, 3]
    assert fired["reason"].tolist() == [
        "customer 5 is on the watchlist: sanctions list match",
        "terminal 9 is on the watchlist: skimming device found",
        "customer 6 is on the watchlist: PEP; "
        "terminal 9 is on the watchlist: skimming device found",
    ]
    assert fired["watchlist_reason"].tolist() == [
        "sanctions list match",
        "skimming device found",
        "PEP; skimming device found",
    ]


def test_watchlist_rule_without_a_watchlist_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="read_watchlist"):
        evaluate_rules(transactions([(0, 1, 5.0)]), [rule("watchlist")])


def test_read_watchlist_joins_reasons_of_a_repeated_entity(tmp_path) -> None:
    path = tmp_path / "watchlist.csv"
    path.write_text("entity,id,reason\ncustomer,5,sanctions\nCUSTOMER, 5 ,adverse media\n")

    watchlist = read_watchlist(path)

    assert watchlist.to_dict("records") == [
        {"entity": "customer", "id": "5", "reason": "sanctions; adverse media"}
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("entity,id\ncustomer,5\n", ["missing column(s) reason", "entity, id, reason"]),
        (
            "entity,id,reason\ncustomer,5,x\ncard,6,y\n",
            ["not one of customer, terminal", "line(s) 3"],
        ),
        (
            "entity,id,reason\ncustomer,,x\nterminal,4,\n",
            ["id is empty on line(s) 2", "line(s) 3"],
        ),
        ("", ["is empty", "entity,id,reason"]),
    ],
)
def test_a_malformed_watchlist_names_the_problem_and_the_lines(
    tmp_path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "watchlist.csv"
    path.write_text(text)

    with pytest.raises(ValueError) as raised:
        read_watchlist(path)

    for fragment in [str(path), *expected]:
        assert fragment in str(raised.value)


def test_a_missing_watchlist_file_says_which_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_watchlist(tmp_path / "nowhere.csv")


def test_a_watchlist_frame_is_checked_like_a_file() -> None:
    frame = WATCHLIST.assign(entity=["customer", "bank", "terminal"])

    with pytest.raises(ValueError, match=r"row\(s\) 1"):
        check_watchlist(frame)


# all rules together


def test_missing_customer_column_names_the_rule() -> None:
    batch = transactions([(0, 1, 5.0)]).drop(columns="customer_id")

    with pytest.raises(ValueError, match=r"customer_id needed by rule AML-03 \(velocity\)"):
        evaluate_rules(batch, [rule("large_transaction"), rule("velocity")])


def test_rows_come_in_batch_order_then_rule_order_and_reasons_gather_per_transaction() -> None:
    rows = [(0, 5, 12_000.0), (1, 5, 5.0), (2, 5, 5.0), (3, 5, 5.0), (4, 1, 5.0)]
    rules = rules_from_params(PARAMS)

    fired = evaluate_rules(transactions(rows), rules, watchlist=WATCHLIST)
    gathered = reasons_by_transaction(fired)

    assert list(zip(fired["transaction_id"], fired["rule_id"], strict=True)) == [
        (1, "AML-01"),
        (1, "KYC-01"),
        (2, "KYC-01"),
        (3, "KYC-01"),
        (4, "AML-03"),
        (4, "KYC-01"),
    ]
    assert gathered["transaction_id"].tolist() == [1, 2, 3, 4]
    assert gathered["rules"].iloc[3] == ["AML-03", "KYC-01"]
    assert gathered["reasons"].iloc[0] == (
        "AML-01: amount 12,000.00 is at or above the threshold of 10,000; "
        "KYC-01: customer 5 is on the watchlist: sanctions list match"
    )


def test_nothing_fired_gives_empty_tables_with_the_columns() -> None:
    fired = evaluate_rules(transactions([(0, 1, 5.0)]), rules_from_params(PARAMS), None, WATCHLIST)

    assert fired.empty and list(fired.columns) == list(FIRED_COLUMNS)
    assert list(reasons_by_transaction(fired).columns) == ["transaction_id", "rules", "reasons"]


def test_one_log_line_per_rule_with_its_count(caplog) -> None:
    rows = [(0, 5, 12_000.0), (1, 2, 5.0)]

    with caplog.at_level(logging.INFO, logger="fraudops.rules"):
        evaluate_rules(transactions(rows), rules_from_params(PARAMS), watchlist=WATCHLIST)

    flagged = [r.getMessage() for r in caplog.records if "flagged" in r.getMessage()]
    assert flagged == [
        "rule AML-01 (large_transaction) flagged 1 of 2 transactions",
        "rule AML-02 (structuring) flagged 0 of 2 transactions",
        "rule AML-03 (velocity) flagged 0 of 2 transactions",
        "rule KYC-01 (watchlist) flagged 1 of 2 transactions",
    ]


# point in time, on simulated data

# Thresholds scaled to the simulator's amounts (mostly below a few hundred), so every rule fires.
SIMULATED_PARAMS = {
    "large_transaction": {**PARAMS["large_transaction"], "threshold": 300},
    "structuring": {**PARAMS["structuring"], "threshold": 300, "window_hours": 24},
    "velocity": {**PARAMS["velocity"], "max_count": 3, "window_minutes": 60},
}


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    config = SimulationConfig(
        seed=11, n_customers=300, n_terminals=150, history_days=20, new_days=5, score_days=5
    )
    return simulate_transactions(config, progress=False).drop(columns="period")


def test_later_transactions_do_not_change_what_fired_earlier(simulated: pd.DataFrame) -> None:
    rules = rules_from_params(SIMULATED_PARAMS)
    cut = simulated["timestamp"].min() + pd.Timedelta(days=22)
    history, batch = simulated.iloc[:2_000], simulated.iloc[2_000:]
    earlier = batch[batch["timestamp"] < cut]

    on_earlier = evaluate_rules(earlier, rules, history=history)
    on_all = evaluate_rules(batch, rules, history=history)

    assert set(on_earlier["rule_id"]) == {"AML-01", "AML-02", "AML-03"}
    restricted = on_all[on_all["transaction_id"].isin(earlier["transaction_id"])]
    pd.testing.assert_frame_equal(on_earlier, restricted.reset_index(drop=True))


def _brute_force_windows(frame: pd.DataFrame, window: pd.Timedelta, below=None) -> pd.DataFrame:
    """Count and total of each transaction's window, one transaction at a time."""
    rows = []
    for position, row in enumerate(frame.itertuples()):
        earlier = frame.iloc[: position + 1]
        same = earlier[
            (earlier["customer_id"] == row.customer_id)
            & (earlier["timestamp"] > row.timestamp - window)
            & (earlier["timestamp"] <= row.timestamp)
        ]
        if below is not None:
            same = same[same["amount"] < below]
        rows.append((row.transaction_id, len(same), same["amount"].sum(), row.amount))
    return pd.DataFrame(rows, columns=["transaction_id", "count", "total", "amount"])


def test_windows_match_a_one_by_one_count(simulated: pd.DataFrame) -> None:
    sample = simulated[simulated["customer_id"] < 40].iloc[:800].reset_index(drop=True)
    # Round times to quarter hours, so equal times occur and the order among them matters.
    sample["timestamp"] = sample["timestamp"].dt.floor("15min")
    history, batch = sample.iloc[:300], sample.iloc[300:]
    rules = rules_from_params(SIMULATED_PARAMS)

    fired = evaluate_rules(batch, rules, history=history)

    velocity = _brute_force_windows(sample, pd.Timedelta(minutes=60)).iloc[300:]
    expected = velocity.loc[velocity["count"] > 3, "transaction_id"].tolist()
    assert fired_ids(fired, "AML-03") == expected
    structuring = _brute_force_windows(sample, pd.Timedelta(hours=24), below=300).iloc[300:]
    pattern = (structuring["amount"] < 300) & (structuring["count"] >= 3)
    pattern &= structuring["total"].round(6) > 300
    assert fired_ids(fired, "AML-02") == structuring.loc[pattern, "transaction_id"].tolist()
    assert len(expected) > 0 and pattern.sum() > 0
