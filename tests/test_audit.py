"""Tests of the hash-chained audit log: every edit, deletion, reordering or cut is found."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudops.audit import GENESIS_HASH, AuditLog, AuditLogError, verify

EVENTS = [
    ("transactions_scored", {"batch": "score_batch", "rows": 4_420}),
    ("rule_fired", {"rule_id": "AML-01", "transaction_id": 8845}),
    ("alert_created", {"alert_id": "A-1", "transaction_id": 8845}),
    ("alert_sent", {"alert_id": "A-1", "channel": "email"}),
    ("alert_failed", {"alert_id": "A-2", "error": "smtp timeout"}),
    ("model_promoted", {"model": "challenger", "auc": 0.91}),
]


@pytest.fixture()
def log_path(tmp_path: Path) -> Path:
    """A log of the six EVENTS, one append each."""
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path)
    for event, details in EVENTS:
        log.append(event, **details)
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


def test_a_fresh_log_verifies_and_its_entries_are_chained(log_path: Path) -> None:
    entries = AuditLog(log_path).entries()

    result = verify(log_path)

    assert (result.ok, result.entries, result.broken_at) == (True, 6, None)
    assert "6 entries, chain intact" in result.reason
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert [(e["event"], e["details"]) for e in entries] == EVENTS
    assert entries[0]["prev_hash"] == GENESIS_HASH
    assert [e["prev_hash"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]


def test_the_hash_is_sha256_of_the_canonical_entry_without_hash(log_path: Path) -> None:
    entry = AuditLog(log_path).entries()[2]

    content = {key: value for key, value in entry.items() if key != "hash"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))

    assert entry["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert entry["time"].endswith("+00:00")


def test_append_returns_what_is_stored_and_head_is_the_last_hash(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "new" / "deeper" / "audit.jsonl")

    first = log.append("alert_created", alert_id="A-1")
    second = log.append("alert_sent", alert_id="A-1")

    assert log.entries() == [first, second]
    assert log.head() == second["hash"]
    assert second["prev_hash"] == first["hash"]


def _edit_field(lines: list[str]) -> list[str]:
    entry = json.loads(lines[2])
    entry["details"]["transaction_id"] = 9999
    return [*lines[:2], json.dumps(entry) + "\n", *lines[3:]]


def _edit_and_rehash(lines: list[str]) -> list[str]:
    entry = json.loads(lines[2])
    entry["details"]["alert_id"] = "A-9"
    content = {key: value for key, value in entry.items() if key != "hash"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    entry["hash"] = hashlib.sha256(text.encode()).hexdigest()
    return [*lines[:2], json.dumps(entry) + "\n", *lines[3:]]


def _add_field(lines: list[str]) -> list[str]:
    entry = {**json.loads(lines[1]), "note": "added later"}
    return [lines[0], json.dumps(entry) + "\n", *lines[2:]]


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (_edit_field, 3, "line 3: hash does not match its content (edited?)"),
        (_edit_and_rehash, 4, "line 4: prev_hash is not the previous line's hash"),
        (_add_field, 2, "line 2: the entry has 'note' (edited?)"),
        (
            lambda lines: [*lines[:2], *lines[3:]],
            3,
            "line 3: seq 4 follows 2 (an entry was deleted",
        ),
        (lambda lines: lines[1:], 1, "line 1: seq 2 starts the log, not 1"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2, "line 2: seq 3 follows 1"),
        (lambda lines: [*lines[:4], lines[3], *lines[4:]], 5, "line 5: seq 4 follows 4"),
        (
            lambda lines: [*lines[:3], lines[3][:40] + "\n", *lines[4:]],
            4,
            "line 4: not valid JSON",
        ),
        (lambda lines: [*lines[:3], "\n", *lines[3:]], 4, "line 4: not valid JSON"),
        (lambda lines: [*lines[:5], lines[5][:30]], 6, "line 6: the line is unfinished"),
        (lambda lines: [*lines[:2], "[1, 2]\n", *lines[3:]], 3, "line 3: not a JSON object"),
    ],
    ids=[
        "edit",
        "edit-rehash",
        "add-field",
        "delete",
        "delete-first",
        "swap",
        "duplicate",
        "garble",
        "blank",
        "torn-end",
        "not-object",
    ],
)
def test_tampering_is_found_at_the_right_line(log_path: Path, tamper, line: int, reason: str):
    write_lines(log_path, tamper(lines_of(log_path)))

    result = verify(log_path)

    assert (result.ok, result.broken_at, result.entries) == (False, line, line - 1)
    assert reason in result.reason


def test_truncation_at_the_end_is_found_only_with_the_expected_head(log_path: Path) -> None:
    head = AuditLog(log_path).head()
    write_lines(log_path, lines_of(log_path)[:4])

    without = verify(log_path)
    with_head = verify(log_path, expected_head=head)

    assert without.ok and without.entries == 4
    assert (with_head.ok, with_head.entries, with_head.broken_at) == (False, 4, 5)
    assert "truncated at the end?" in with_head.reason
    assert head[:12] in with_head.reason


def test_a_log_that_grew_after_its_head_was_kept_still_verifies(log_path: Path) -> None:
    log = AuditLog(log_path)
    head = log.head()
    log.append("alert_created", alert_id="A-3")

    result = verify(log_path, expected_head=head)

    assert (result.ok, result.entries) == (True, 7)
    assert "expected head is line 6, followed by 1 entry" in result.reason


@pytest.mark.parametrize("make", [lambda path: None, lambda path: path.write_text("")])
def test_an_empty_or_missing_log_verifies_with_zero_entries(tmp_path: Path, make) -> None:
    path = tmp_path / "audit.jsonl"
    make(path)

    result = verify(path)

    assert (result.ok, result.entries, result.broken_at) == (True, 0, None)
    assert "0 entries" in result.reason
    assert AuditLog(path).head() is None and AuditLog(path).entries() == []


def test_an_empty_log_with_an_expected_head_was_truncated(tmp_path: Path) -> None:
    result = verify(tmp_path / "audit.jsonl", expected_head="ab" * 32)

    assert (result.ok, result.broken_at) == (False, 1)
    assert "truncated" in result.reason


def test_two_log_objects_on_one_file_stay_chained(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path), AuditLog(path)

    for number in range(5):
        first.append("rule_fired", number=number)
        second.append("alert_created", number=number)

    result = verify(path)
    assert (result.ok, result.entries) == (True, 10)
    assert [e["seq"] for e in first.entries()] == list(range(1, 11))


def test_concurrent_appends_stay_chained(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def append_twenty(worker: int) -> None:
        log = AuditLog(path)
        for number in range(20):
            log.append_many([("rule_fired", {"worker": worker, "n": number})] * 2)

    threads = [threading.Thread(target=append_twenty, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    result = verify(path)
    assert (result.ok, result.entries) == (True, 160)


def test_append_many_writes_chained_entries_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("transactions_scored", rows=10)

    written = log.append_many(EVENTS[1:4])

    assert [e["seq"] for e in written] == [2, 3, 4]
    assert [e["event"] for e in written] == ["rule_fired", "alert_created", "alert_sent"]
    assert log.entries()[1:] == written
    assert log.append_many([]) == []
    assert verify(log.path).entries == 4


def test_appending_after_a_torn_line_is_refused(log_path: Path) -> None:
    lines = lines_of(log_path)
    write_lines(log_path, [*lines[:5], lines[5][:30]])

    with pytest.raises(AuditLogError, match="unfinished line"):
        AuditLog(log_path).append("alert_sent", alert_id="A-3")

    assert len(lines_of(log_path)) == 6


def test_numpy_and_pandas_details_are_stored_as_plain_json(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")

    log.append(
        "transactions_scored",
        rows=np.int64(4_420),
        share=np.float64(0.25),
        flagged=np.bool_(True),
        scores=np.array([0.5, 0.75]),
        counts=pd.Series([1, 2], index=["a", "b"]),
        missing=np.nan,
        na=pd.NA,
        not_a_time=pd.NaT,
        infinite=float("inf"),
        at=pd.Timestamp("2026-03-02 10:00", tz="Europe/Zurich"),
        naive=np.datetime64("2026-03-02T09:30"),
        precise=pd.Timestamp("2026-03-02 09:30:00.5").to_datetime64(),
        took=pd.Timedelta(minutes=90),
        file=Path("data/raw/score_batch.parquet"),
        nested={1: {"ids": (np.int32(7), np.int32(8))}},
    )

    stored = json.loads(lines_of(log.path)[0])["details"]
    assert stored == {
        "rows": 4_420,
        "share": 0.25,
        "flagged": True,
        "scores": [0.5, 0.75],
        "counts": [1, 2],
        "missing": None,
        "na": None,
        "not_a_time": None,
        "infinite": "inf",
        "at": "2026-03-02T09:00:00+00:00",
        "naive": "2026-03-02T09:30:00",
        "precise": "2026-03-02T09:30:00.500000",
        "took": "P0DT1H30M0S",
        "file": "data/raw/score_batch.parquet",
        "nested": {"1": {"ids": [7, 8]}},
    }
    assert verify(log.path).ok


@pytest.mark.parametrize(
    ("event", "details", "error", "message"),
    [
        ("model_promoted", {"model": object()}, TypeError, "detail 'model' is a object"),
        ("alert_sent", {"to": {"team": {1, object()}}}, TypeError, "'alert_sent'"),
        ("", {}, ValueError, "non-empty name"),
        ("alert_sent", ["A-1"], TypeError, "must be a dict"),
    ],
)
def test_bad_events_are_refused_and_nothing_is_written(
    tmp_path: Path, event, details, error, message: str
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")

    with pytest.raises(error, match=message):
        log.append_many([(event, details)])

    assert not log.path.exists()
