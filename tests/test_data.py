"""Tests of reading, mapping and validating transaction files, and of the data stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudops import paths
from fraudops.data import (
    CANONICAL,
    ULB_FEATURES,
    DataValidationError,
    SourceSpec,
    build_raw_data,
    extra_columns,
    parse_column_mapping,
    read_canonical,
    read_transactions,
    require_both_classes,
    source_spec,
    split_by_time,
)
from fraudops.simulate import ulb_like_frame, write_simulated_data

RAW_FILES = ["history", "new_batch", "score_batch", "score_labels"]


def small_batch(rows: int = 8) -> pd.DataFrame:
    """Eight valid transactions of two cards, hourly, with both classes."""
    return pd.DataFrame(
        {
            "transaction_id": np.arange(100, 100 + rows),
            "timestamp": pd.date_range("2026-01-05", periods=rows, freq="h").astype(str),
            "customer_id": [1, 2] * (rows // 2),
            "terminal_id": 7,
            "amount": np.linspace(5.0, 40.0, rows),
            "label": [0, 0, 0, 1] * (rows // 4),
        }
    )


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _set(column: str, rows: list[int], value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[rows, column] = value
        return frame

    return change


def _rename(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"amount": "transaction_amount", "label": "fraud_label"})


MAPPED = "amount=transaction_amount,label=fraud_label"

# Each bad input: how to break a valid batch, the mapping to read it with, and the fragments
# its one problem must name (column, rule and the exact count of breaking rows).
BAD_INPUTS = [
    pytest.param(
        lambda f: f.drop(columns="amount"),
        "",
        ["column 'amount'", "rule 'required column is present'"],
        id="missing-column",
    ),
    pytest.param(
        lambda f: _rename(f).drop(columns="transaction_amount"),
        MAPPED,
        ["column 'amount' (file column 'transaction_amount')", "required column is present"],
        id="missing-mapped-column",
    ),
    pytest.param(
        lambda f: f.drop(columns="timestamp"),
        "",
        ["column 'timestamp'", "rule 'required column is present'"],
        id="missing-timestamp-column",
    ),
    pytest.param(
        _set("amount", [1, 3], "abc"),
        "",
        ["column 'amount'", "rule 'value is a number'", "broken by 2 rows"],
        id="amount-not-a-number",
    ),
    pytest.param(
        _set("amount", [0, 2, 5], -1.5),
        "",
        ["column 'amount'", "rule 'amount is not negative'", "broken by 3 rows"],
        id="negative-amount",
    ),
    pytest.param(
        lambda f: _set("transaction_amount", [4], -2.0)(_rename(f)),
        MAPPED,
        ["(file column 'transaction_amount')", "amount is not negative", "broken by 1 rows"],
        id="negative-mapped-amount",
    ),
    pytest.param(
        _set("amount", [6], np.inf),
        "",
        ["column 'amount'", "rule 'amount is finite'", "broken by 1 rows"],
        id="infinite-amount",
    ),
    pytest.param(
        _set("amount", [1, 2, 7], np.nan),
        "",
        ["column 'amount'", "rule 'value is present'", "broken by 3 rows"],
        id="missing-amount",
    ),
    pytest.param(
        _set("label", [0, 5], 2),
        "",
        ["column 'label'", "rule 'label is 0 or 1'", "broken by 2 rows"],
        id="label-not-0-or-1",
    ),
    pytest.param(
        lambda f: _set("fraud_label", [0], 7)(_rename(f)),
        MAPPED,
        ["column 'label' (file column 'fraud_label')", "label is 0 or 1", "by 1 rows"],
        id="mapped-label-not-0-or-1",
    ),
    pytest.param(
        _set("transaction_id", [3, 4, 6], 101),
        "",
        ["column 'transaction_id'", "rule 'transaction id is unique'", "broken by 4 rows"],
        id="duplicate-ids",
    ),
    pytest.param(
        _set("timestamp", [2, 3], "not a time"),
        "",
        ["column 'timestamp'", "rule 'timestamp is parseable'", "broken by 2 rows"],
        id="unparseable-timestamp",
    ),
    pytest.param(
        _set("customer_id", [5], None),
        "",
        ["column 'customer_id'", "rule 'value is present'", "broken by 1 rows"],
        id="missing-card",
    ),
]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(("breakage", "columns", "fragments"), BAD_INPUTS)
def test_each_bad_input_names_file_column_rule_and_rows(
    tmp_path, suffix, breakage, columns, fragments
) -> None:
    frame = breakage(small_batch())
    if suffix == ".parquet":
        # Parquet needs one type per column; broken values travel as text, as in a CSV.
        frame = frame.astype({c: str for c in frame if frame[c].dtype == object})
    path = write_table(frame, tmp_path / f"batch{suffix}")

    with pytest.raises(DataValidationError) as caught:
        read_transactions(SourceSpec(path, columns=columns))

    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    first = caught.value.problems[0]
    assert all(fragment in first for fragment in fragments), first
    # The one broken rule is reported alone (a missing column adds the file's own columns).
    assert len([p for p in caught.value.problems if "rule" in p]) == 1


def test_several_broken_rules_are_all_listed(tmp_path) -> None:
    frame = _set("label", [1], 3)(_set("amount", [0, 4], -1.0)(small_batch()))
    path = write_table(frame, tmp_path / "batch.csv")
    with pytest.raises(DataValidationError) as caught:
        read_transactions(SourceSpec(path))
    problems = "\n".join(caught.value.problems)
    assert "rule 'amount is not negative' broken by 2 rows" in problems
    assert "rule 'label is 0 or 1' broken by 1 rows" in problems


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("no-bytes.csv", lambda path: path.write_text("")),
        ("header-only.csv", lambda path: path.write_text("timestamp,amount,label\n")),
        ("no-rows.parquet", lambda path: small_batch().iloc[:0].to_parquet(path)),
    ],
)
def test_empty_file_is_refused(tmp_path, name, write) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(DataValidationError, match="has no rows") as caught:
        read_transactions(SourceSpec(path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("value", "missing"), [(0, "fraud"), (1, "genuine")])
def test_training_data_with_one_class_is_refused(value, missing) -> None:
    frame = small_batch().assign(label=value)
    with pytest.raises(DataValidationError) as caught:
        require_both_classes(frame, "data/raw/history.parquet")
    message = str(caught.value)
    assert "data/raw/history.parquet" in message
    assert "column 'label': rule 'training data holds both classes'" in message
    assert f"no {missing} rows among 8" in message


def test_both_classes_pass() -> None:
    require_both_classes(small_batch(), "history")


def test_valid_file_reads_to_sorted_canonical_frame(tmp_path) -> None:
    shuffled = small_batch().sample(frac=1.0, random_state=0)
    frame = read_transactions(SourceSpec(write_table(shuffled, tmp_path / "batch.csv")))

    assert list(frame.columns) == list(CANONICAL)
    assert frame["timestamp"].dtype == "datetime64[ns]"
    assert frame["amount"].dtype == np.float64
    assert frame["label"].dtype == np.int8
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["transaction_id"].tolist() == list(range(100, 108))


def test_timezones_are_converted_to_utc(tmp_path) -> None:
    batch = small_batch().assign(timestamp="2026-01-05T10:00:00+02:00")
    batch["transaction_id"] = range(len(batch))
    frame = read_transactions(SourceSpec(write_table(batch, tmp_path / "batch.csv")))
    assert (frame["timestamp"] == pd.Timestamp("2026-01-05 08:00")).all()


def test_column_mapping_gives_the_canonical_frame(tmp_path) -> None:
    expected = read_transactions(SourceSpec(write_table(small_batch(), tmp_path / "a.csv")))
    path = write_table(_rename(small_batch()), tmp_path / "b.csv")
    frame = read_transactions(SourceSpec(path, columns=MAPPED))
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("amount", "not of the form"),
        ("amount=", "not of the form"),
        ("=transaction_amount", "not of the form"),
        ("amount=transaction_amount,price=cost", "unknown column 'price'"),
    ],
)
def test_bad_column_mapping_is_rejected(text, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_column_mapping(text)
    with pytest.raises(ValueError, match=message):
        SourceSpec(Path("batch.csv"), columns=text)


def test_column_mapping_accepts_categoricals_and_spaces() -> None:
    spec = SourceSpec(
        Path("x.csv"), columns=" amount = amt , channel=chan", categoricals=("channel",)
    )
    assert spec.mapping == {"amount": "amt", "channel": "chan"}


@pytest.mark.parametrize("origin", ["2026-01-05", "2024-02-28"])
def test_ulb_preset_reads_the_ulb_layout(tmp_path, origin) -> None:
    ulb = ulb_like_frame(n_rows=1500, seed=2)
    path = write_table(ulb, tmp_path / "creditcard.csv")
    frame = read_transactions(source_spec(path, preset="ulb", timestamp_origin=origin))

    assert list(frame.columns) == ["timestamp", "amount", "label", *ULB_FEATURES, "transaction_id"]
    expected = pd.Timestamp(origin) + pd.to_timedelta(ulb["Time"], unit="s")
    assert (frame["timestamp"] == expected).all()
    assert frame["timestamp"].iloc[0] == pd.Timestamp(origin)
    assert frame["transaction_id"].is_unique
    assert frame["transaction_id"].tolist() == list(range(len(ulb)))
    np.testing.assert_array_equal(frame["amount"], ulb["Amount"])
    np.testing.assert_array_equal(frame["label"], ulb["Class"])
    np.testing.assert_allclose(frame[list(ULB_FEATURES)], ulb[list(ULB_FEATURES)])


def test_unknown_preset_and_file_type_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown data preset 'kaggle'"):
        source_spec("x.csv", preset="kaggle")
    path = tmp_path / "batch.xlsx"
    path.write_text("x")
    with pytest.raises(ValueError, match="unknown file type '.xlsx'"):
        read_transactions(SourceSpec(path))
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        read_transactions(SourceSpec(tmp_path / "missing.csv"))


@pytest.mark.parametrize(("new_share", "score_share"), [(0.15, 0.15), (0.2, 0.1)])
def test_split_by_time_cuts_by_shares_of_the_span(transactions, new_share, score_share) -> None:
    history, new_batch, score_batch = split_by_time(transactions, new_share, score_share)
    start, end = transactions["timestamp"].min(), transactions["timestamp"].max()
    score_from = end - (end - start) * score_share
    new_from = score_from - (end - start) * new_share

    assert len(history) + len(new_batch) + len(score_batch) == len(transactions)
    assert history["timestamp"].max() < new_from <= new_batch["timestamp"].min()
    assert new_batch["timestamp"].max() < score_from <= score_batch["timestamp"].min()
    assert list(score_batch.index) == list(range(len(score_batch)))


def _raw_dir_files(root: Path) -> list[str]:
    folder = root / paths.RAW_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    ("bad_file", "breakage", "message"),
    [
        ("history", _set("amount", [2], -5.0), "amount is not negative"),
        ("history", lambda f: f.assign(label=0), "training data holds both classes"),
        ("new_batch", _set("label", [0, 1], 9), "label is 0 or 1"),
        ("score_batch", lambda f: f.drop(columns="timestamp"), "required column is present"),
    ],
)
def test_bad_csv_leaves_no_raw_file(
    tmp_path, bad_file, breakage, message, new_project, small_config
) -> None:
    root = new_project()
    files = {}
    for offset, name in enumerate(["history", "new_batch", "score_batch"]):
        batch = small_batch().assign(transaction_id=lambda f, o=offset: f.index + 100 * o)
        if name == bad_file:
            batch = breakage(batch)
        files[name] = f"data/external/{name}.csv"
        (root / "data/external").mkdir(parents=True, exist_ok=True)
        write_table(batch, root / files[name])

    with pytest.raises(DataValidationError, match=message) as caught:
        build_raw_data(
            root,
            source="csv",
            simulation=small_config,
            history_path=files["history"],
            new_batch_path=files["new_batch"],
            score_batch_path=files["score_batch"],
        )
    assert f"{bad_file}.csv" in str(caught.value)
    assert _raw_dir_files(root) == []


def test_csv_history_alone_is_cut_into_four_files(
    tmp_path, transactions, new_project, small_config
) -> None:
    root = new_project()
    (root / "data/external").mkdir(parents=True)
    transactions.to_csv(root / "data/external/history.csv", index=False)

    written = build_raw_data(
        root,
        source="csv",
        simulation=small_config,
        history_path="data/external/history.csv",
        categoricals="channel,tx_type,merchant_category",
        new_batch_share=0.2,
        score_batch_share=0.1,
    )

    assert list(written) == RAW_FILES
    assert _raw_dir_files(root) == sorted(f"{name}.parquet" for name in RAW_FILES)
    frames = {name: pd.read_parquet(path) for name, path in written.items()}
    expected = split_by_time(transactions, 0.2, 0.1)
    for name, part in zip(RAW_FILES[:3], expected, strict=True):
        assert frames[name]["transaction_id"].tolist() == part["transaction_id"].tolist()
    assert {"label", "fraud_kind"}.isdisjoint(frames["score_batch"].columns)
    labels = frames["score_labels"]
    assert list(labels.columns) == ["transaction_id", "label", "fraud_kind"]
    assert labels["transaction_id"].tolist() == frames["score_batch"]["transaction_id"].tolist()
    assert labels["label"].tolist() == expected[2]["label"].tolist()


def test_unlabelled_score_batch_gets_an_empty_labels_file(
    tmp_path, new_project, small_config
) -> None:
    root = new_project()
    history = small_batch()
    score = small_batch().drop(columns="label").assign(transaction_id=range(8))
    write_table(history, root / "history.parquet")
    write_table(score, root / "score.parquet")

    written = build_raw_data(
        root,
        source="parquet",
        simulation=small_config,
        history_path="history.parquet",
        score_batch_path="score.parquet",
        new_batch_share=0.5,
        score_batch_share=0.0,
    )

    assert len(pd.read_parquet(written["score_batch"])) == 8
    labels = pd.read_parquet(written["score_labels"])
    assert list(labels.columns) == ["transaction_id", "label"]
    assert labels.empty


def test_synthetic_source_writes_the_simulators_four_files(
    tmp_path, new_project, small_config
) -> None:
    root = new_project()
    written = build_raw_data(root, source="synthetic", simulation=small_config, progress=False)
    reference = write_simulated_data(small_config, tmp_path / "reference", progress=False)

    assert list(written) == RAW_FILES
    for name in RAW_FILES:
        assert written[name] == root / paths.RAW_DIR / f"{name}.parquet"
        assert written[name].read_bytes() == reference[name].read_bytes()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": "excel"}, "unknown data source 'excel'"),
        ({"source": "csv"}, "data.history_path is empty"),
    ],
)
def test_bad_data_settings_are_refused(tmp_path, settings, message, small_config) -> None:
    with pytest.raises(ValueError, match=message):
        build_raw_data(tmp_path, simulation=small_config, **settings)


def test_read_canonical_keeps_extra_columns_as_features(
    tmp_path, new_project, small_config
) -> None:
    root = new_project()
    write_simulated_data(small_config, root / paths.RAW_DIR, progress=False)
    history = read_canonical(root, paths.HISTORY)
    score = read_canonical(root, paths.SCORE_BATCH)

    assert extra_columns(history) == (("channel", "tx_type", "merchant_category"), ())
    assert history["channel"].isna().any()
    assert "label" in history
    assert "label" not in score
