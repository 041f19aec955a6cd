"""An append-only audit log of the pipeline's decisions, chained by SHA-256.

Each decision (transactions scored, rule fired, alert created, sent or failed, model promoted)
is one line of JSON: ``seq``, ``time`` (UTC), ``event``, ``details``, ``prev_hash`` and
``hash``. The hash is SHA-256 over the entry's canonical JSON (sorted keys, no spaces) without
``hash``; ``prev_hash`` is the hash of the line before (64 zeros for the first). Editing,
deleting or reordering a line breaks the chain, and :func:`verify` says where.

The chain has no secret key: someone who rewrites every line after an edit, or cuts lines off
the end, leaves a valid chain. Keep the head (:meth:`AuditLog.head`) somewhere else, such as
the run report, and give it to :func:`verify` to catch that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import fcntl
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
FIELDS = ("seq", "time", "event", "details", "prev_hash", "hash")
_TAIL_CHUNK = 64 * 1024


class AuditLogError(RuntimeError):
    """The audit log cannot be appended to as it stands; the message says why and what to do."""


def canonical_json(payload: Mapping) -> str:
    """The JSON text hashes are computed over: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: Mapping) -> str:
    """SHA-256 (hex) over the canonical JSON of ``entry`` without its ``hash`` field."""
    content = {key: value for key, value in entry.items() if key != "hash"}
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


class AuditLog:
    """An append-only JSON Lines audit log whose entries are chained by hash.

    Several objects and processes may append to one file: each append holds an exclusive
    ``fcntl`` lock on it, links to the last line on disk, and is fsynced before it returns.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, event: str, **details) -> dict:
        """Append one decision and return its entry.

        Args:
            event: What happened, e.g. ``"alert_created"``.
            **details: JSON-serialisable facts about it; numpy and pandas scalars, timestamps,
                arrays and paths are converted.
        """
        return self.append_many([(event, details)])[0]

    def append_many(self, event_details: list[tuple[str, dict]]) -> list[dict]:
        """Append several decisions in one locked write and return their entries, in order."""
        pending = [_checked(event, details) for event, details in event_details]
        if not pending:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()

        with _locked(self.path, "a+b", fcntl.LOCK_EX) as file:
            written = _chained(pending, _last_entry(file, self.path))
            file.write("".join(canonical_json(e) + "\n" for e in written).encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        if created:
            _fsync_folder(self.path.parent)

        logger.info(
            "audit log %s: appended %s (seq %d-%d)",
            self.path,
            ", ".join(dict.fromkeys(entry["event"] for entry in written)),
            written[0]["seq"],
            written[-1]["seq"],
        )
        return written

    def entries(self) -> list[dict]:
        """All entries, in order; an unreadable line raises :class:`AuditLogError`."""
        if not self.path.exists():
            return []
        with _locked(self.path, "rb", fcntl.LOCK_SH) as file:
            return [_parse_line(raw, number, self.path) for number, raw in enumerate(file, 1)]

    def head(self) -> str | None:
        """The hash of the last entry, or None for an empty or missing log."""
        if not self.path.exists():
            return None
        with _locked(self.path, "rb", fcntl.LOCK_SH) as file:
            last = _last_entry(file, self.path)
        return last["hash"] if last else None


def _chained(pending: list[tuple[str, dict]], last: dict | None) -> list[dict]:
    last_seq, prev_hash = (last["seq"], last["hash"]) if last else (0, GENESIS_HASH)
    entries = []
    for seq, (event, details) in enumerate(pending, last_seq + 1):
        entries.append(_new_entry(seq, event, details, prev_hash))
        prev_hash = entries[-1]["hash"]
    return entries


def _new_entry(seq: int, event: str, details: dict, prev_hash: str) -> dict:
    entry = {
        "seq": seq,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        "event": event,
        "details": details,
        "prev_hash": prev_hash,
    }
    return {**entry, "hash": entry_hash(entry)}


def _checked(event: object, details: object) -> tuple[str, dict]:
    if not isinstance(event, str) or not event.strip():
        raise ValueError(
            f"audit event must be a non-empty name such as 'alert_sent', got {event!r}"
        )
    if not isinstance(details, Mapping):
        raise TypeError(f"audit details of {event!r} must be a dict, got {type(details).__name__}")
    try:
        return event, _jsonable(details, "")
    except TypeError as error:
        raise TypeError(f"audit event {event!r}: {error}") from None


@contextmanager
def _locked(path: Path, mode: str, kind: int) -> Iterator[IO[bytes]]:
    with open(path, mode) as file:
        fcntl.flock(file.fileno(), kind)
        try:
            yield file
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _last_entry(file: IO[bytes], path: Path) -> dict | None:
    """Read the last line from the end of the file, so appends stay fast on a long log."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return None
    tail = b""
    while True:
        start = max(0, size - len(tail) - _TAIL_CHUNK)
        file.seek(start)
        tail = file.read(size - start)
        if tail.count(b"\n") >= 2 or start == 0:
            break
    if not tail.endswith(b"\n"):
        raise AuditLogError(
            f"audit log {path} ends in an unfinished line (a torn write?); nothing was "
            "appended. Run fraudops.audit.verify on it and repair the last line first"
        )
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    entry = _parse_line(last + b"\n", None, path)
    if not isinstance(entry.get("seq"), int) or not isinstance(entry.get("hash"), str):
        raise AuditLogError(
            f"audit log {path}: the last line has no seq or hash; nothing was appended. "
            "Run fraudops.audit.verify on it and repair the last line first"
        )
    return entry


def _parse_line(raw: bytes, number: int | None, path: Path) -> dict:
    where = f"line {number}" if number else "the last line"
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AuditLogError(
            f"audit log {path}: {where} is not valid JSON (a torn or garbled write?); "
            "run fraudops.audit.verify on it"
        ) from None
    if not isinstance(entry, dict):
        raise AuditLogError(f"audit log {path}: {where} is not a JSON object")
    return entry


def _jsonable(value: object, where: str) -> object:
    """Convert a detail to plain JSON values; ``where`` names it in the error."""
    if isinstance(value, Mapping):
        return {
            str(k): _jsonable(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, np.ndarray | pd.Series | pd.Index | list | tuple):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(_items(value))]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(item, where) for item in value), key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where)
    return _json_scalar(value, where)


def _json_scalar(value: object, where: str) -> object:
    if value is None or isinstance(value, bool | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    # Before the other numpy scalars: .item() of a nanosecond datetime64 is a bare integer.
    if isinstance(value, pd.Timestamp | dt.datetime | np.datetime64):
        return _timestamp_text(pd.Timestamp(value))
    if isinstance(value, pd.Timedelta | dt.timedelta | np.timedelta64):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, np.generic):
        return _json_scalar(value.item(), where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, where)
    raise TypeError(
        f"detail {where!r} is a {type(value).__name__}, which cannot be written as JSON; "
        "give a number, text, list or dict (convert it with str() if need be)"
    )


def _items(values) -> list:
    return values.tolist() if isinstance(values, np.ndarray | pd.Series | pd.Index) else values


def _finite(number: float) -> float | str | None:
    # JSON has no NaN or infinity: missing becomes null, infinities become text.
    if math.isnan(number):
        return None
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return number


def _timestamp_text(stamp: pd.Timestamp) -> str | None:
    if pd.isna(stamp):
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    return stamp.isoformat()


@dataclass
class VerifyResult:
    """What :func:`verify` found.

    Attributes:
        ok: Whether the whole chain is intact.
        entries: Intact entries read before the break (all of them when ``ok``).
        broken_at: 1-based line number of the first break, or None when ``ok``.
        reason: Where and why the chain breaks, or what was checked.
    """

    ok: bool
    entries: int
    broken_at: int | None
    reason: str


def verify(path: str | Path, expected_head: str | None = None) -> VerifyResult:
    """Check an audit log's hash chain line by line.

    Args:
        path: The JSON Lines audit log.
        expected_head: A head hash kept elsewhere (e.g. in a run report). It must be the hash
            of some entry in the log: entries appended after it are fine, a log cut off
            before it is reported as truncated.

    Returns:
        A :class:`VerifyResult` naming the first broken line and why it is broken.
    """
    path = Path(path)
    if not path.exists():
        result = _verdict_at_end(0, None, expected_head, f"no audit log at {path} yet: 0 entries")
    else:
        with _locked(path, "rb", fcntl.LOCK_SH) as file:
            result = _verify_lines(file, expected_head)
    log = logger.info if result.ok else logger.warning
    log("audit log %s: %s", path, result.reason)
    return result


def _verify_lines(lines: IO[bytes], expected_head: str | None) -> VerifyResult:
    previous, count, head_line = None, 0, None
    for count, raw in enumerate(lines, 1):
        problem, entry = _line_problem(raw, previous)
        if problem:
            return VerifyResult(False, count - 1, count, f"line {count}: {problem}")
        if entry["hash"] == expected_head:
            head_line = count
        previous = entry
    empty = "the log is empty: 0 entries, nothing to check"
    return _verdict_at_end(count, head_line, expected_head, empty)


def _line_problem(raw: bytes, previous: dict | None) -> tuple[str | None, dict | None]:
    """Why one line breaks the chain (None when it does not), and its parsed entry."""
    if not raw.endswith(b"\n"):
        return "the line is unfinished, with no newline at its end (a torn write?)", None
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not valid JSON (a torn or garbled write?)", None
    if not isinstance(entry, dict):
        return "not a JSON object (garbled?)", None
    missing = [name for name in FIELDS if name not in entry]
    extra = [name for name in entry if name not in FIELDS]
    if missing or extra:
        found = ", ".join([*(f"lacks '{m}'" for m in missing), *(f"has '{e}'" for e in extra)])
        return f"the entry {found} (edited?)", None
    if entry["hash"] != entry_hash(entry):
        return "hash does not match its content (edited?)", None
    return _link_problem(entry, previous), entry


def _link_problem(entry: dict, previous: dict | None) -> str | None:
    seq, expected_seq = entry["seq"], previous["seq"] + 1 if previous else 1
    if not isinstance(seq, int) or isinstance(seq, bool):
        return f"seq {seq!r} is not a whole number (edited?)"
    if previous is None and seq != 1:
        return f"seq {seq} starts the log, not 1 (entries deleted from the start?)"
    if previous is not None and seq > expected_seq:
        return f"seq {seq} follows {previous['seq']} (an entry was deleted or moved?)"
    if previous is not None and seq < expected_seq:
        return f"seq {seq} follows {previous['seq']} (entries reordered or copied?)"
    if entry["prev_hash"] != (previous["hash"] if previous else GENESIS_HASH):
        before = "the previous line's hash" if previous else "64 zeros, as a first entry must"
        return f"prev_hash is not {before} (an entry was replaced or re-hashed?)"
    return None


def _verdict_at_end(
    count: int, head_line: int | None, expected_head: str | None, empty: str
) -> VerifyResult:
    if expected_head is not None and head_line is None:
        reason = (
            f"line {count + 1}: the log ends after {_entries(count)} and the expected head "
            f"{expected_head[:12]}... is not among them (truncated at the end?)"
        )
        return VerifyResult(False, count, count + 1, reason)
    if count == 0:
        return VerifyResult(True, 0, None, empty)
    reason = f"{_entries(count)}, chain intact"
    if expected_head is not None:
        reason += f"; expected head is line {head_line}, followed by {_entries(count - head_line)}"
    return VerifyResult(True, count, None, reason)


def _entries(count: int) -> str:
    return f"{count:,} {'entry' if count == 1 else 'entries'}"
