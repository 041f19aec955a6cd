"""`fraudops score` delivering its alerts to real servers on 127.0.0.1, through faults.

Each test runs the command line as a separate process on a small scoring project, with the
channels set in that process's environment: aiosmtpd for e-mail, http.server for the webhook.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from fraudops import cli, paths
from fraudops.alerts import Outbox, mask_identifier
from fraudops.audit import AuditLog, verify

SENDER = "fraudops@bank.example"
ANALYSTS = "analysts@bank.example,compliance@bank.example"
OUTBOX = "reports/alerts/outbox.jsonl"
AUDIT = "reports/audit/audit.jsonl"
BATCH_ROWS = 500
KEY_LINE = re.compile(r"^\s*key: (\S+)$", re.MULTILINE)
TRANSACTION_LINE = re.compile(r"^\s*transaction_id: (\d+)$", re.MULTILINE)
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """aiosmtpd handler: accepts ``accept`` messages (all if None), then answers 421."""

    def __init__(self, accept: int | None = None):
        self.accept = accept
        self.messages: list[email.message.EmailMessage] = []
        self.refused = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.accept is not None and len(self.messages) >= self.accept:
            self.refused.set()
            return "421 4.3.2 Service shutting down"
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 2.0.0 Message accepted"


@pytest.fixture
def smtp_server():
    """Start aiosmtpd on 127.0.0.1: ``start(inbox, port=None) -> controller``."""
    started = []

    def start(inbox: Inbox, port: int | None = None) -> Controller:
        controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port())
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        # aiosmtpd asserts it is running: a test may have stopped its server already.
        with contextlib.suppress(AssertionError):
            controller.stop()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """An HTTP server on 127.0.0.1 keeping each POST: ``(url, received)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    server.received = []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/fraud/secret-token", server.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(scoring_project):
    """The scoring project with a small batch to score in ``incoming/batch.parquet``."""
    batch = pd.read_parquet(scoring_project / paths.SCORE_BATCH).head(BATCH_ROWS)
    (scoring_project / "incoming").mkdir()
    batch.to_parquet(scoring_project / "incoming" / "batch.parquet")
    return scoring_project


def score(project, **channels: str) -> subprocess.CompletedProcess:
    """``fraudops score`` in its own process, with only the given FRAUDOPS_* variables set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FRAUDOPS_") and k.lower() not in PROXIES
    }
    env.update({f"FRAUDOPS_{name.upper()}": value for name, value in channels.items()})
    command = ["score", "incoming/batch.parquet", "--out", "scored.parquet", "--no-progress"]
    return subprocess.run(
        [sys.executable, "-m", "fraudops.cli", *command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def email_channel(port: int) -> dict[str, str]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": str(port),
        "smtp_security": "none",
        "alert_from": SENDER,
        "alert_to": ANALYSTS,
    }


def outbox_alerts(project) -> dict:
    return {alert.key: alert for alert in Outbox(project / OUTBOX).alerts()}


def email_states(project) -> Counter:
    return Counter(r["state"] for r in Outbox(project / OUTBOX).status(["email"]))


def text_of(message) -> str:
    return message.get_content().replace("\r\n", "\n")


def keys_in(message) -> list[str]:
    return KEY_LINE.findall(text_of(message))


def assert_each_alert_in_exactly_one_message(messages, alerts: dict) -> None:
    ids = [message["Message-ID"] for message in messages]
    assert len(set(ids)) == len(ids)
    carried = Counter(key for message in messages for key in keys_in(message))
    assert set(carried) == set(alerts)
    assert max(carried.values()) == 1
    # Each message lists the transactions of its own alerts, and no other.
    for message in messages:
        listed = sorted(int(t) for t in TRANSACTION_LINE.findall(text_of(message)))
        assert listed == sorted(alerts[k].details["transaction_id"] for k in keys_in(message))


def sent_in_audit(project) -> Counter:
    entries = AuditLog(project / AUDIT).entries()
    return Counter(e["details"]["key"] for e in entries if e["event"] == "alert_sent")


# ---------------------------------------------------------------------------------------------
# Delivered once, identifiers masked
# ---------------------------------------------------------------------------------------------


def test_score_emails_immediate_alerts_and_a_digest_and_posts_the_webhook(
    project, smtp_server, webhook
):
    inbox = Inbox()
    controller = smtp_server(inbox)
    url, received = webhook

    done = score(project, **email_channel(controller.port), webhook_url=url)
    assert done.returncode == 0, done.stderr
    alerts = outbox_alerts(project)
    high = [a for a in alerts.values() if a.severity == "high"]
    routine = [a for a in alerts.values() if a.severity != "high"]
    assert len(high) >= 3 and 3 <= len(routine) <= 50  # the digest cap of params.yaml

    subjects = [m["Subject"] for m in inbox.messages]
    assert len(subjects) == len(high) + 1
    # (the e-mail library may fold a long subject onto its own line, leaving a leading space)
    subjects = [s.strip() for s in subjects]
    assert sum(s.startswith("[fraudops] HIGH ") for s in subjects) == len(high)
    assert subjects.count(f"[fraudops] Alert digest: {len(routine)} alerts") == 1
    assert all(
        m["From"] == SENDER and m["To"] == ANALYSTS.replace(",", ", ") for m in inbox.messages
    )
    assert_each_alert_in_exactly_one_message(inbox.messages, alerts)

    for message in inbox.messages:
        body = text_of(message)
        for key in keys_in(message):
            customer = alerts[key].details["customer_id"]
            assert f"customer_id: {customer}\n" not in body
            assert f"customer_id: {mask_identifier(customer)}\n" in body

    # The webhook got the same messages as JSON; the digest lists the routine alerts, masked.
    assert len(received) == len(inbox.messages)
    digest_headers, digest = next(
        (h, b) for h, b in received if b["message_id"].startswith("digest.")
    )
    assert {a["key"] for a in digest["alerts"]} == {a.key for a in routine}
    assert digest["left_out"] == 0 and digest["run_id"]
    assert digest_headers["Idempotency-Key"] == digest["message_id"]
    assert digest_headers["Content-Type"].startswith("application/json")
    for alert in digest["alerts"]:
        original = alerts[alert["key"]].details
        assert alert["details"]["customer_id"] == mask_identifier(original["customer_id"])
        assert alert["details"]["transaction_id"] == original["transaction_id"]

    sent = sent_in_audit(project)
    assert set(sent) == set(alerts) and set(sent.values()) == {2}  # once per channel
    report = (project / "reports" / "compliance" / "report.md").read_text()
    assert f"| email | {len(alerts)} | 0 | 0 |" in report

    again = score(project, **email_channel(controller.port), webhook_url=url)
    assert again.returncode == 0, again.stderr
    assert len(inbox.messages) == len(high) + 1 and len(received) == len(inbox.messages)
    assert sent_in_audit(project) == sent
    assert verify(project / AUDIT).ok


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def test_server_stopping_mid_run_leaves_the_rest_pending_for_the_rerun(project, smtp_server):
    accept = 3
    first = Inbox(accept=accept)
    controller = smtp_server(first)
    port = controller.port

    # Once the server refuses a message, it goes away altogether, as a crashing server would.
    stopper = threading.Thread(target=lambda: first.refused.wait(120) and controller.stop())
    stopper.start()
    cut = score(project, **email_channel(port))
    stopper.join(10)
    assert first.refused.is_set() and not stopper.is_alive()

    assert cut.returncode == cli.EXIT_DELIVERY, cut.stderr
    assert "fraudops: email delivery still failed after its retries" in cut.stderr
    alerts = outbox_alerts(project)
    assert len(first.messages) == accept < len(alerts)
    delivered = {key for message in first.messages for key in keys_in(message)}
    assert email_states(project) == Counter(
        {"sent": len(delivered), "pending": len(alerts) - len(delivered)}
    )
    assert set(sent_in_audit(project)) == delivered

    second = Inbox()
    smtp_server(second, port=port)
    rerun = score(project, **email_channel(port))
    assert rerun.returncode == 0, rerun.stderr
    assert email_states(project) == Counter({"sent": len(alerts)})

    both = first.messages + second.messages
    assert_each_alert_in_exactly_one_message(both, alerts)
    assert not delivered & {key for message in second.messages for key in keys_in(message)}
    assert sent_in_audit(project) == Counter(dict.fromkeys(alerts, 1))
    assert verify(project / AUDIT).ok


def test_server_down_from_the_start_keeps_every_alert_for_the_rerun(project, smtp_server):
    port = free_port()

    down = score(project, **email_channel(port))
    assert down.returncode == cli.EXIT_DELIVERY, down.stderr
    alerts = outbox_alerts(project)
    assert alerts and email_states(project) == Counter({"pending": len(alerts)})
    errors = [r["last_error"] for r in Outbox(project / OUTBOX).status(["email"]) if r["attempts"]]
    assert errors and all("ConnectionRefusedError" in error for error in errors)
    assert sent_in_audit(project) == Counter()
    report = (project / "reports" / "compliance" / "report.md").read_text()
    assert f"| email | 0 | 0 | {len(alerts)} |" in report

    inbox = Inbox()
    smtp_server(inbox, port=port)
    up = score(project, **email_channel(port))
    assert up.returncode == 0, up.stderr
    assert email_states(project) == Counter({"sent": len(alerts)})
    assert_each_alert_in_exactly_one_message(inbox.messages, alerts)
    assert verify(project / AUDIT).ok
