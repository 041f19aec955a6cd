"""Alerts: one outbox, then e-mail and webhook delivery, for every stage of the pipeline.

Every alert is first appended to a local outbox (JSON Lines, the source of truth) under a
stable key, then sent on each configured channel. A rerun sends only what is still pending on
each channel, so an alert is neither lost nor sent twice. Card and customer identifiers are
masked before anything leaves the bank.

Stages call ``raise_alerts``; notebooks read ``Outbox(path).status()``.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

logger = logging.getLogger(__name__)

KINDS = ("fraud", "compliance", "drift", "pipeline_failure")
SEVERITIES = ("low", "medium", "high", "critical")
CHANNELS = ("email", "webhook")
OUTCOMES = ("sent", "retry", "failed")
SMTP_SECURITY = ("starttls", "ssl", "none")
DEFAULT_SMTP_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

# Names (split on separators and camelCase) whose values are card or customer identifiers.
_IDENTIFIER_WORDS = frozenset(
    {"card", "cardholder", "cardnumber", "cardid", "pan", "customer", "customerid", "cust"}
    | {"custid", "account", "accountid", "accountnumber", "acct", "iban"}
)
# Runs of 12-19 digits, optionally split by single spaces or dashes: card numbers in free text.
_CARD_NUMBER = re.compile(r"(?<![\d-])\d(?:[ -]?\d){11,18}(?!\d)")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_ADDRESS = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+$")
_MAX_ERROR_CHARS = 300
_MAX_SUBJECT_TITLE = 160


# ---------------------------------------------------------------------------------------------
# Alerts and settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One alert, identified by a key that stays the same when a stage reruns.

    The key, the title and the masked details leave the bank; the key must not carry card or
    customer identifiers (titles and details are masked, keys are sent as they are).
    """

    kind: str
    key: str
    title: str
    severity: str
    details: dict
    created_at: str

    @classmethod
    def new(
        cls,
        kind: str,
        key: str,
        title: str,
        severity: str = "medium",
        details: Mapping | None = None,
        created_at: str | datetime | None = None,
    ) -> Alert:
        """Build a validated alert.

        Args:
            kind: One of ``KINDS``.
            key: Idempotency key, stable across reruns, e.g. ``"fraud:2026-05-04:tx:12345"``.
            title: One line for people; control characters are removed before sending.
            severity: One of ``SEVERITIES``.
            details: JSON-serialisable reasons, scores, identifiers (masked when sent).
            created_at: ISO timestamp or datetime; naive values are taken as UTC. Default: now.

        Returns:
            The alert, with ``created_at`` as an ISO timestamp in UTC.
        """
        _check_choice("alert kind", kind, KINDS)
        _check_choice("alert severity", severity, SEVERITIES)
        if not isinstance(key, str) or not key.strip() or _CONTROL_CHARS.search(key):
            raise ValueError(
                f"alert key {key!r} must be a non-empty single-line string, stable across reruns "
                "(e.g. 'fraud:2026-05-04:tx:12345')"
            )
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"alert {key!r} needs a non-empty title")
        details = dict(details or {})
        try:
            json.dumps(details, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"details of alert {key!r} are not JSON-serialisable ({error}); convert numpy "
                "and pandas values to plain Python numbers and strings first"
            ) from error
        return cls(kind, key, title, severity, details, _utc_timestamp(created_at, key))

    @classmethod
    def from_dict(cls, payload: Mapping) -> Alert:
        """Rebuild (and validate) an alert from its outbox form."""
        return cls.new(**{f.name: payload[f.name] for f in fields(cls)})


@dataclass(frozen=True, repr=False)
class AlertSettings:
    """Where alerts go. With no SMTP host and no webhook, alerts stay in the outbox only.

    ``ca_file`` is an extra PEM bundle of trusted certificates for SMTP TLS and HTTPS webhooks
    (a bank's internal CA); without it the system's trust store is used. Verification is never
    turned off.
    """

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: str = "starttls"
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    webhook_url: str | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 4
    backoff_seconds: float = 1.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipients", tuple(self.recipients))
        _check_choice("smtp_security", self.smtp_security, SMTP_SECURITY)
        if self.smtp_port is not None and not 0 < self.smtp_port < 65536:
            raise ValueError(f"smtp_port {self.smtp_port} is not a TCP port (1-65535)")
        if self.timeout_seconds <= 0 or self.backoff_seconds < 0 or self.max_attempts < 1:
            raise ValueError(
                "timeout_seconds must be > 0, backoff_seconds >= 0 and max_attempts >= 1; got "
                f"{self.timeout_seconds}, {self.backoff_seconds}, {self.max_attempts}"
            )
        for address in (self.sender, *self.recipients):
            if address is not None and not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not a single e-mail address like a@bank.example")

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["smtp_password"] = "***" if self.smtp_password else None
        shown["webhook_url"] = _redact_url(self.webhook_url)
        return f"AlertSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def email_enabled(self) -> bool:
        """Whether e-mail is configured: an SMTP host, a sender and at least one recipient."""
        return bool(self.smtp_host and self.sender and self.recipients)

    @property
    def webhook_enabled(self) -> bool:
        """Whether a webhook URL is configured."""
        return bool(self.webhook_url)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
    ) -> AlertSettings:
        """Read settings from ``FRAUDOPS_*`` variables and a git-ignored ``.env`` file.

        Real environment variables win over the file; a variable set to "" counts as unset.

        Args:
            environ: The environment to read; default ``os.environ``.
            dotenv_path: The ``.env`` file, skipped if missing or ``None``.

        Returns:
            The settings.

        Raises:
            ValueError: Naming the variable that is wrong or missing (never a secret value).
        """
        values = _settings_sources(os.environ if environ is None else environ, dotenv_path)
        host = values.get("FRAUDOPS_SMTP_HOST")
        security = (values.get("FRAUDOPS_SMTP_SECURITY") or "starttls").lower()
        if security not in SMTP_SECURITY:
            raise ValueError(
                f"FRAUDOPS_SMTP_SECURITY is {security!r}; use one of starttls, ssl, none"
            )
        user, password = values.get("FRAUDOPS_SMTP_USER"), values.get("FRAUDOPS_SMTP_PASSWORD")
        if bool(user) != bool(password):
            missing = "FRAUDOPS_SMTP_PASSWORD" if user else "FRAUDOPS_SMTP_USER"
            raise ValueError(f"{missing} is missing; SMTP login needs both user and password")
        settings = cls(
            smtp_host=host,
            smtp_port=_env_port(values.get("FRAUDOPS_SMTP_PORT"), security, host),
            smtp_user=user,
            smtp_password=password,
            smtp_security=security,
            sender=_env_addresses(values, "FRAUDOPS_ALERT_FROM", host, single=True),
            recipients=_env_addresses(values, "FRAUDOPS_ALERT_TO", host),
            webhook_url=_env_webhook_url(values.get("FRAUDOPS_WEBHOOK_URL")),
            ca_file=_env_ca_file(values.get("FRAUDOPS_CA_FILE")),
        )
        logger.info(
            "alert settings: e-mail %s, webhook %s",
            f"via {host} ({security})" if settings.email_enabled else "off",
            "on" if settings.webhook_enabled else "off",
        )
        return settings


def _settings_sources(environ: Mapping[str, str], dotenv_path: str | Path | None) -> dict:
    from_file = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        from_file = dotenv_values(dotenv_path)
    merged = {**from_file, **environ}
    return {k: (v or None) for k, v in merged.items() if k.startswith("FRAUDOPS_")}


def _env_port(value: str | None, security: str, host: str | None) -> int | None:
    if value is None:
        return DEFAULT_SMTP_PORTS[security] if host else None
    if not value.strip().isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"FRAUDOPS_SMTP_PORT is {value!r}; use a TCP port number (1-65535)")
    return int(value)


def _env_addresses(values: Mapping, name: str, host: str | None, single: bool = False):
    addresses = tuple(a.strip() for a in (values.get(name) or "").split(",") if a.strip())
    if host and not addresses:
        raise ValueError(f"{name} is missing; it is required when FRAUDOPS_SMTP_HOST is set")
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if bad or (single and len(addresses) > 1):
        raise ValueError(
            f"{name} holds {bad or addresses!r}; use "
            + ("one address" if single else "comma-separated addresses like a@bank.example")
        )
    if single:
        return addresses[0] if addresses else None
    return addresses


def _env_webhook_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("https", "http"):
        raise ValueError("FRAUDOPS_WEBHOOK_URL must be an https:// (or http://) URL")
    return value


def _env_ca_file(value: str | None) -> str | None:
    if value is not None and not Path(value).is_file():
        raise ValueError(f"FRAUDOPS_CA_FILE points to {value}, which is not a file")
    return value


# ---------------------------------------------------------------------------------------------
# The outbox
# ---------------------------------------------------------------------------------------------


class Outbox:
    """An append-only JSON Lines file of alert events; the source of truth for delivery.

    Each line is one event: ``created`` (an alert, once per key) or ``delivery`` (one attempt's
    outcome on a channel). Appends hold an exclusive ``fcntl`` lock and are fsynced, so processes
    sharing the file never interleave. Unreadable lines, such as a last line torn by a crash, are
    skipped with a warning.

    On a channel an alert is ``sent`` once any attempt succeeded (and is never sent there again),
    ``failed`` if its latest outcome is a permanent failure, otherwise ``pending``. To requeue a
    failed alert after fixing its cause, ``record(key, channel, "retry", error="requeued")``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def add(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Append ``created`` events for alerts whose key is not in the outbox yet.

        Returns:
            The alerts that were new, in the order given; a repeated key keeps its first alert.
        """
        alerts = list(alerts)
        for alert in alerts:
            if not isinstance(alert, Alert):
                raise TypeError(f"outbox {self.path} takes Alert objects, got {type(alert)}")
        with self._locked(fcntl.LOCK_EX) as handle:
            known = {e["key"] for e in self._read(handle) if e["event"] == "created"}
            new = []
            for alert in alerts:
                if alert.key not in known:
                    known.add(alert.key)
                    new.append(alert)
            _append(handle, [_created_event(alert) for alert in new])
        logger.info(
            "outbox %s: %d new alerts added, %d already known",
            self.path,
            len(new),
            len(alerts) - len(new),
        )
        return new

    def alerts(self) -> list[Alert]:
        """All alerts in the outbox, in the order they were added."""
        return list(self._state()[0].values())

    def pending(self, channel: str) -> list[Alert]:
        """Alerts not yet sent on ``channel`` and not permanently failed there."""
        _check_choice("channel", channel, CHANNELS)
        alerts, deliveries = self._state()
        return [a for a in alerts.values() if _channel_state(deliveries, a.key, channel)[0] == ""]

    def status(self, channels: Iterable[str] = CHANNELS) -> list[dict]:
        """One row per alert and channel: state (pending/sent/failed), attempts, last error.

        Returns:
            A list of dicts (``pandas.DataFrame(outbox.status())`` for a table).
        """
        alerts, deliveries = self._state()
        rows = []
        for alert in alerts.values():
            for channel in channels:
                state, events = _channel_state(deliveries, alert.key, channel)
                last = events[-1] if events else {}
                rows.append(
                    {
                        "key": alert.key,
                        "kind": alert.kind,
                        "severity": alert.severity,
                        "channel": channel,
                        "state": state or "pending",
                        "attempts": len(events),
                        "last_error": next((e["error"] for e in events[::-1] if e["error"]), None),
                        "last_at": last.get("at"),
                        "message_id": last.get("message_id"),
                    }
                )
        return rows

    def record(
        self,
        key: str,
        channel: str,
        outcome: str,
        error: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Append the outcome of one delivery attempt of alert ``key`` on ``channel``.

        Args:
            key: The alert's key; it must be in the outbox.
            channel: One of ``CHANNELS``.
            outcome: ``"sent"``, ``"retry"`` (temporary failure) or ``"failed"`` (permanent).
            error: What went wrong, for people reading the status.
            message_id: The message that carried the alert, to trace it downstream.
        """
        with self._locked(fcntl.LOCK_EX) as handle:
            if key not in {e["key"] for e in self._read(handle) if e["event"] == "created"}:
                raise ValueError(f"alert {key!r} is not in outbox {self.path}; add it first")
            _append(handle, [_delivery_event(key, channel, outcome, error, message_id)])

    def _record_all(self, keys, channel, outcome, error=None, message_id=None) -> None:
        events = [_delivery_event(k, channel, outcome, error, message_id) for k in keys]
        with self._locked(fcntl.LOCK_EX) as handle:
            _append(handle, events)

    def _state(self) -> tuple[dict[str, Alert], dict[tuple[str, str], list[dict]]]:
        alerts: dict[str, Alert] = {}
        deliveries: dict[tuple[str, str], list[dict]] = {}
        for event in self._events():
            if event["event"] == "created" and event["key"] not in alerts:
                alerts[event["key"]] = event["alert"]
            elif event["event"] == "delivery":
                deliveries.setdefault((event["key"], event["channel"]), []).append(event)
        return alerts, deliveries

    def _events(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self._locked(fcntl.LOCK_SH) as handle:
            return self._read(handle)

    @contextmanager
    def _locked(self, mode: int) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, mode)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self, handle: IO[bytes]) -> list[dict]:
        # TODO: every call reads and validates the whole file; start a new outbox per month (or
        # compact sent events away) once one grows past a few hundred thousand events.
        handle.seek(0)
        events, skipped = [], 0
        for line in handle.read().split(b"\n"):
            if not line.strip():
                continue
            event = _parse_event(line)
            if event is None:
                skipped += 1
            else:
                events.append(event)
        if skipped:
            logger.warning(
                "outbox %s: skipped %d unreadable lines (a write cut short by a crash leaves one)",
                self.path,
                skipped,
            )
        return events


def _parse_event(line: bytes) -> dict | None:
    try:
        event = json.loads(line)
        if event["event"] == "created":
            event["alert"] = Alert.from_dict(event["alert"])
            return event
        if event["event"] == "delivery" and event["outcome"] in OUTCOMES:
            return event if event["key"] and event["channel"] in CHANNELS else None
        return None
    except (ValueError, KeyError, TypeError):
        return None


def _append(handle: IO[bytes], events: list[dict]) -> None:
    if not events:
        return
    lines = b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in events)
    handle.seek(0, os.SEEK_END)
    if handle.tell() > 0:
        handle.seek(-1, os.SEEK_END)
        # End a torn last line first, so it stays one unreadable line instead of eating ours.
        if handle.read(1) != b"\n":
            lines = b"\n" + lines
    handle.write(lines)
    handle.flush()
    os.fsync(handle.fileno())


def _created_event(alert: Alert) -> dict:
    return {"event": "created", "key": alert.key, "alert": asdict(alert), "at": _utc_timestamp()}


def _delivery_event(key, channel, outcome, error, message_id) -> dict:
    _check_choice("channel", channel, CHANNELS)
    _check_choice("delivery outcome", outcome, OUTCOMES)
    return {
        "event": "delivery",
        "key": key,
        "channel": channel,
        "outcome": outcome,
        "error": None if error is None else _one_line(str(error))[:_MAX_ERROR_CHARS],
        "message_id": message_id,
        "at": _utc_timestamp(),
    }


def _channel_state(deliveries, key: str, channel: str) -> tuple[str, list[dict]]:
    """'sent', 'failed' or '' (pending), and the delivery events behind it."""
    events = deliveries.get((key, channel), [])
    if any(e["outcome"] == "sent" for e in events):
        return "sent", events
    if events and events[-1]["outcome"] == "failed":
        return "failed", events
    return "", events


# ---------------------------------------------------------------------------------------------
# What leaves the bank: masking and escaping
# ---------------------------------------------------------------------------------------------


def mask_identifier(value: object) -> str:
    """Mask an identifier, keeping only its last 4 characters: ``"************5678"``.

    Values of 4 characters or fewer are masked whole, since their last 4 would be all of them.
    """
    text = str(value)
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


def mask_details(details: Mapping) -> dict:
    """Mask card, customer and account identifiers (by field name) and card numbers in text."""
    return {key: _masked(value, _is_identifier_name(key)) for key, value in details.items()}


def _masked(value: Any, sensitive: bool) -> Any:
    if isinstance(value, Mapping):
        return {k: _masked(v, sensitive or _is_identifier_name(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v, sensitive) for v in value]
    if value is None or isinstance(value, (bool, float)):
        return value
    if sensitive:
        return mask_identifier(value)
    if isinstance(value, str):
        return _scrub_card_numbers(value)
    if isinstance(value, int) and _CARD_NUMBER.fullmatch(str(value)):
        return mask_identifier(value)
    return value


def _is_identifier_name(name: object) -> bool:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).lower()
    return not _IDENTIFIER_WORDS.isdisjoint(re.split(r"[^a-z0-9]+", words))


def _scrub_card_numbers(text: str) -> str:
    return _CARD_NUMBER.sub(lambda m: mask_identifier(re.sub(r"\D", "", m.group())), text)


def _one_line(text: str) -> str:
    """Text with CR, LF and other control characters replaced by spaces: safe in a header."""
    return _CONTROL_CHARS.sub(" ", text).strip()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _public_view(alert: Alert) -> dict:
    """The alert as it may leave the bank: one-line scrubbed title, masked details."""
    return {
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": _scrub_card_numbers(_one_line(alert.title)),
        "created_at": alert.created_at,
        "details": mask_details(alert.details),
    }


# ---------------------------------------------------------------------------------------------
# Messages: one per immediate alert, one digest for the rest
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    message_id: str  # derived from the alert keys, so a resend is recognisable downstream
    subject: str
    text: str
    views: tuple[dict, ...]
    keys: tuple[str, ...]
    left_out: int = 0


def _plan_messages(alerts, digest_cap: int, immediate_severity: str, run_id: str):
    line = SEVERITIES.index(immediate_severity)
    ranked = _most_severe_first(alerts)
    immediate = [a for a in ranked if SEVERITIES.index(a.severity) >= line]
    routine = [a for a in ranked if SEVERITIES.index(a.severity) < line]
    messages = [_immediate_message(alert, run_id) for alert in immediate]
    if routine:
        messages.append(_digest_message(routine[:digest_cap], len(routine) - digest_cap, run_id))
    return messages


def _most_severe_first(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (-SEVERITIES.index(a.severity), a.created_at, a.key))


def _immediate_message(alert: Alert, run_id: str) -> _Message:
    view = _public_view(alert)
    head = f"{alert.severity.upper()} {alert.kind} alert: {view['title']}"
    lines = [head, "", *_alert_lines(view), *_run_lines(run_id)]
    return _Message(
        message_id=_message_id("alert", [alert.key]),
        subject=f"[fraudops] {head[:_MAX_SUBJECT_TITLE]}",
        text="\n".join(lines) + "\n",
        views=(view,),
        keys=(alert.key,),
    )


def _digest_message(shown: list[Alert], left_out: int, run_id: str) -> _Message:
    views = [_public_view(alert) for alert in shown]
    lines = [f"fraudops alert digest: {len(shown)} alerts, most severe first.", ""]
    for view in views:
        lines += [f"[{view['severity'].upper()}] {view['kind']}: {view['title']}"]
        lines += ["    " + line for line in _alert_lines(view)] + [""]
    if left_out > 0:
        lines.append(
            f"{left_out} more alerts not shown; they stay pending and lead the next digest."
        )
    subject = f"[fraudops] Alert digest: {len(shown)} alerts"
    return _Message(
        message_id=_message_id("digest", [alert.key for alert in shown]),
        subject=subject + (f" ({left_out} more pending)" if left_out > 0 else ""),
        text="\n".join(lines + _run_lines(run_id)) + "\n",
        views=tuple(views),
        keys=tuple(alert.key for alert in shown),
        left_out=max(left_out, 0),
    )


def _alert_lines(view: dict) -> list[str]:
    lines = [f"key: {view['key']}", f"created: {view['created_at']}"]
    for name, value in view["details"].items():
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        lines.append(f"{_one_line(str(name))}: {_one_line(shown)}")
    return lines


def _run_lines(run_id: str) -> list[str]:
    return ["", f"run: {_one_line(run_id)}"] if run_id else []


def _message_id(prefix: str, keys: list[str]) -> str:
    digest = hashlib.sha256("\n".join([prefix, *keys]).encode()).hexdigest()[:32]
    return f"{prefix}.{digest}"


# ---------------------------------------------------------------------------------------------
# Channels: e-mail over SMTP and a JSON webhook
# ---------------------------------------------------------------------------------------------


def _email_message(message: _Message, settings: AlertSettings) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = _one_line(message.subject)
    email["From"] = settings.sender
    email["To"] = ", ".join(settings.recipients)
    email["Date"] = formatdate(usegmt=True)
    domain = settings.sender.rpartition("@")[2] if settings.sender else "fraudops.invalid"
    email["Message-ID"] = f"<{message.message_id}@{_one_line(domain)}>"
    email.set_content(message.text)
    return email


def _send_email(message: _Message, settings: AlertSettings) -> None:
    # TODO: one SMTP connection per message; reuse one per run if a run sends hundreds.
    email = _email_message(message, settings)
    client = _open_smtp(settings)
    try:
        refused = client.send_message(
            email, from_addr=settings.sender, to_addrs=list(settings.recipients)
        )
    finally:
        _close_quietly(client)
    if refused:
        logger.warning(
            "e-mail %s: %d of %d recipients refused it",
            message.message_id,
            len(refused),
            len(settings.recipients),
        )


def _open_smtp(settings: AlertSettings) -> smtplib.SMTP:
    port = settings.smtp_port or DEFAULT_SMTP_PORTS[settings.smtp_security]
    timeout = settings.timeout_seconds
    if settings.smtp_security == "ssl":
        context = _tls_context(settings)
        client = smtplib.SMTP_SSL(settings.smtp_host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, port, timeout=timeout)
    try:
        if settings.smtp_security == "starttls":
            client.starttls(context=_tls_context(settings))
        if settings.smtp_user:
            client.login(settings.smtp_user, settings.smtp_password or "")
    except BaseException:
        client.close()
        raise
    return client


def _close_quietly(client: smtplib.SMTP) -> None:
    # The message is already accepted here; a failing QUIT must not make it look unsent.
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _tls_context(settings: AlertSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a body-less GET."""

    def redirect_request(self, *args, **kwargs):
        return None


def _webhook_payload(message: _Message, run_id: str) -> dict:
    return {
        "text": _slack_escape(message.text),
        "message_id": message.message_id,
        "run_id": run_id,
        "left_out": message.left_out,
        "alerts": list(message.views),
    }


def _post_webhook(message: _Message, settings: AlertSettings, run_id: str) -> None:
    request = urllib.request.Request(
        settings.webhook_url,
        data=json.dumps(_webhook_payload(message, run_id)).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": message.message_id,
            "User-Agent": "fraudops-alerts",
        },
    )
    https = urllib.request.HTTPSHandler(context=_tls_context(settings))
    opener = urllib.request.build_opener(_NoRedirects, https)
    with opener.open(request, timeout=settings.timeout_seconds) as response:
        response.read()


# Errors of a delivery attempt; anything else is a bug and propagates.
_DELIVERY_ERRORS = (OSError, smtplib.SMTPException, http.client.HTTPException)


def _is_temporary(error: Exception) -> bool:
    """Whether a later attempt may succeed: refused, timed out, SMTP 4xx, HTTP 5xx or 429."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code == 429 or error.code >= 500
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(not 500 <= code < 600 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return not 500 <= error.smtp_code < 600
    # STARTTLS or AUTH missing on the server will not appear by retrying.
    return not isinstance(error, smtplib.SMTPNotSupportedError)


def _describe(error: Exception) -> str:
    return _one_line(f"{type(error).__name__}: {error}")[:_MAX_ERROR_CHARS]


# ---------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What a delivery run did, by channel: alerts sent and failed this run, pending after it."""

    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    messages: int = 0  # messages actually transmitted this run
    added: int = 0  # new alerts added to the outbox (set by raise_alerts)


@dataclass
class _ChannelRun:
    name: str
    transmit: Callable[[_Message], None]
    outbox: Outbox
    settings: AlertSettings
    sleep: Callable[[float], None]
    sent: int = 0
    failed: int = 0
    messages: int = 0

    def send(self, message: _Message) -> str:
        """Send with retries; record and return the outcome: sent, failed or retry."""
        attempts = self.settings.max_attempts
        for attempt in range(attempts):
            try:
                self.transmit(message)
            except _DELIVERY_ERRORS as error:
                if not _is_temporary(error):
                    return self._finish(message, "failed", _describe(error))
                self.outbox._record_all(
                    message.keys, self.name, "retry", _describe(error), message.message_id
                )
                if attempt + 1 < attempts:
                    # TODO: an HTTP 429's Retry-After header is not read; the backoff is used.
                    delay = self.settings.backoff_seconds * 2**attempt
                    logger.warning(
                        "%s %s: attempt %d of %d failed (%s); retrying in %.1f s",
                        self.name,
                        message.message_id,
                        attempt + 1,
                        attempts,
                        _describe(error),
                        delay,
                    )
                    self.sleep(delay)
            else:
                return self._finish(message, "sent")
        logger.warning(
            "%s %s: gave up after %d attempts; its %d alerts stay pending for the next run",
            self.name,
            message.message_id,
            attempts,
            len(message.keys),
        )
        return "retry"

    def _finish(self, message: _Message, outcome: str, error: str | None = None) -> str:
        self.outbox._record_all(message.keys, self.name, outcome, error, message.message_id)
        if outcome == "sent":
            self.sent += len(message.keys)
            self.messages += 1
            logger.info("%s %s: sent %d alerts", self.name, message.message_id, len(message.keys))
        else:
            self.failed += len(message.keys)
            logger.error(
                "%s %s: permanently refused (%s); %d alerts marked failed, not retried",
                self.name,
                message.message_id,
                error,
                len(message.keys),
            )
        return outcome


def _enabled_channels(settings: AlertSettings, run_id: str) -> list[tuple[str, Callable]]:
    channels = []
    if settings.email_enabled:
        channels.append(("email", lambda message: _send_email(message, settings)))
    if settings.webhook_enabled:
        channels.append(("webhook", lambda message: _post_webhook(message, settings, run_id)))
    return channels


def deliver(
    outbox: Outbox,
    settings: AlertSettings,
    digest_cap: int = 50,
    immediate_severity: str = "high",
    run_id: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Send what is pending in ``outbox`` on each enabled channel.

    Alerts at or above ``immediate_severity`` get a message each; the rest share one digest of at
    most ``digest_cap`` alerts, most severe first. Alerts the cap leaves out stay pending and the
    digest says how many. Temporary failures are retried with backoff ``backoff_seconds *
    2**attempt``; once attempts run out the channel stops for this run and its alerts stay
    pending. Permanent refusals mark the message's alerts failed on that channel.

    Args:
        outbox: The outbox to deliver from.
        settings: Channels and retry settings.
        digest_cap: Most alerts listed in one digest.
        immediate_severity: Lowest severity sent on its own, one of ``SEVERITIES``.
        run_id: The pipeline run, shown in messages.
        sleep: Waits between attempts; tests pass a recorder.

    Returns:
        Alerts sent and failed this run, alerts still pending, messages transmitted.
    """
    _check_choice("immediate_severity", immediate_severity, SEVERITIES)
    if not isinstance(digest_cap, int) or digest_cap < 1:
        raise ValueError(f"digest_cap must be a whole number >= 1, got {digest_cap!r}")
    if settings.smtp_user and settings.smtp_security == "none" and settings.email_enabled:
        logger.warning("e-mail: SMTP login without TLS; the password crosses the network in clear")

    report = DeliveryReport()
    for name, transmit in _enabled_channels(settings, run_id):
        run = _ChannelRun(name, transmit, outbox, settings, sleep)
        for message in _plan_messages(
            outbox.pending(name), digest_cap, immediate_severity, run_id
        ):
            # A message that ran out of retries means the channel is down: keep the rest pending.
            if run.send(message) == "retry":
                break
        report.sent[name], report.failed[name] = run.sent, run.failed
        report.pending[name] = len(outbox.pending(name))
        report.messages += run.messages
        logger.info(
            "delivery%s on %s: %d alerts sent in %d messages, %d failed, %d pending",
            f" of run {_one_line(run_id)}" if run_id else "",
            name,
            run.sent,
            run.messages,
            run.failed,
            report.pending[name],
        )
    return report


def raise_alerts(
    alerts: Iterable[Alert],
    outbox_path: str | Path,
    settings: AlertSettings | None = None,
    digest_cap: int = 50,
    immediate_severity: str = "high",
    run_id: str = "",
) -> DeliveryReport:
    """Add alerts to the outbox, then deliver everything pending: the one call stages make.

    Args:
        alerts: The alerts of this run; keys already in the outbox are ignored.
        outbox_path: The outbox file; its folder is created if missing.
        settings: Channels; default ``AlertSettings.from_env()``, read after the alerts are safe
            in the outbox.
        digest_cap: Most alerts listed in one digest.
        immediate_severity: Lowest severity sent on its own.
        run_id: The pipeline run, shown in messages.

    Returns:
        The delivery report, with ``added`` set to the number of new alerts.
    """
    outbox = Outbox(outbox_path)
    added = outbox.add(alerts)
    settings = AlertSettings.from_env() if settings is None else settings
    report = deliver(outbox, settings, digest_cap, immediate_severity, run_id)
    report.added = len(added)
    return report


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(choices)}")


def _utc_timestamp(value: str | datetime | None = None, key: str = "") -> str:
    if value is None:
        return datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"created_at {value!r} of alert {key!r} is not an ISO timestamp "
            "like 2026-05-04T10:00:00+00:00"
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _redact_url(url: str | None) -> str | None:
    """Scheme and host only: webhook paths (Slack's, for one) carry the secret token."""
    if not url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/***"
