"""Tests of the atomic writes: outputs appear whole or not at all."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fraudops.io import (
    atomic_path,
    write_csv_atomic,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)

FRAME = pd.DataFrame({"transaction_id": [1, 2, 3], "amount": [9.5, 0.0, 120.25]})


def _circular() -> dict:
    payload: dict = {"name": "loop"}
    payload["self"] = payload
    return payload


WRITES = [
    pytest.param(write_parquet_atomic, FRAME, pd.read_parquet, id="parquet"),
    pytest.param(write_csv_atomic, FRAME, pd.read_csv, id="csv"),
    pytest.param(
        write_json_atomic,
        {"b": 1, "a": [1.5, "x"]},
        lambda p: json.loads(p.read_text()),
        id="json",
    ),
    pytest.param(write_text_atomic, "line one\nline two\n", lambda p: p.read_text(), id="text"),
]


@pytest.mark.parametrize(("write", "payload", "read"), WRITES)
def test_write_creates_folders_and_leaves_only_the_file(tmp_path, write, payload, read) -> None:
    path = tmp_path / "a" / "b" / "output"
    assert write(payload, path) == path
    assert [p.name for p in path.parent.iterdir()] == ["output"]
    result = read(path)
    if isinstance(payload, pd.DataFrame):
        pd.testing.assert_frame_equal(result, payload)
    else:
        assert result == payload


def test_json_is_sorted_indented_and_stringifies_other_types(tmp_path) -> None:
    path = write_json_atomic({"b": 1, "a": tmp_path}, tmp_path / "out.json")
    assert path.read_text() == f'{{\n  "a": "{tmp_path}",\n  "b": 1\n}}\n'


def _fail_inside(path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("half of it")
        raise OSError("disk full")


FAILING = [
    pytest.param(lambda path: write_json_atomic(_circular(), path), ValueError, id="json-cycle"),
    pytest.param(
        lambda path: write_parquet_atomic(pd.DataFrame({"x": [1, "a"]}), path),
        (TypeError, ValueError),
        id="parquet-mixed-types",
    ),
    pytest.param(_fail_inside, OSError, id="error-while-writing"),
]


@pytest.mark.parametrize(("write", "error"), FAILING)
def test_failed_write_leaves_no_temporary_and_no_destination(tmp_path, write, error) -> None:
    with pytest.raises(error):
        write(tmp_path / "output")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("write", "error"), FAILING)
def test_failed_write_keeps_the_existing_file(tmp_path, write, error) -> None:
    path = tmp_path / "output"
    path.write_text("the previous run's output")
    with pytest.raises(error):
        write(path)
    assert path.read_text() == "the previous run's output"
    assert [p.name for p in tmp_path.iterdir()] == ["output"]


def test_successful_write_replaces_the_existing_file(tmp_path) -> None:
    path = tmp_path / "output"
    path.write_text("old")
    write_text_atomic("new", path)
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["output"]


def test_temporary_file_sits_beside_the_destination_until_the_end(tmp_path) -> None:
    path = tmp_path / "out" / "model.skops"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent
        assert tmp.name.startswith(".model.skops.")
        assert not path.exists()
        tmp.write_text("done")
    assert path.read_text() == "done"
    assert not tmp.exists()
