"""Alerts against real servers on 127.0.0.1: aiosmtpd for e-mail, http.server for webhooks."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import multiprocessing
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fraudops.alerts import (
    Alert,
    AlertSettings,
    Outbox,
    deliver,
    mask_identifier,
    raise_alerts,
)

SENDER = "fraudops@bank.example"
ANALYSTS = ("analysts@bank.example", "compliance@bank.example")
USER, PASSWORD = "alerts", "s3cret-Passw0rd"
CREATED = "2026-05-04T10:00:00+00:00"


def make_alert(n: int, severity: str = "low", kind: str = "fraud") -> Alert:
    return Alert.new(
        kind,
        f"{kind}:2026-05-04:tx:{n}",
        f"Suspicious transaction {n}",
        severity,
        {"score": 0.9},
        CREATED,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    """urllib honours proxy variables; the webhook tests talk to 127.0.0.1 directly."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# A real SMTP server
# ---------------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: answers DATA with the scripted replies first, then with ``then``."""

    def __init__(self, script=(), then="250 2.0.0 Message accepted"):
        self.script, self.then = list(script), then
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.data_calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.data_calls += 1
        reply = self.script.pop(0) if self.script else self.then
        if reply.startswith("250"):
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return reply


def check_password(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd itself answers 535 on failure (with True it would stay silent).
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server():
    """Start aiosmtpd controllers on 127.0.0.1: ``start(inbox, port=None, **smtp_options)``."""
    started = []

    def start(inbox: Inbox, port: int | None = None, **options) -> int:
        port = port or free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return port

    yield start
    for controller in started:
        controller.stop()


def email_settings(port: int, **changes) -> AlertSettings:
    base = dict(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        sender=SENDER,
        recipients=ANALYSTS,
        timeout_seconds=5.0,
        max_attempts=3,
        backoff_seconds=1.0,
    )
    return AlertSettings(**{**base, **changes})


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(tls_files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


# ---------------------------------------------------------------------------------------------
# A real HTTP server for webhooks
# ---------------------------------------------------------------------------------------------


class WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        hook = self.server.hook
        body = self.rfile.read(int(self.headers["Content-Length"]))
        hook.calls += 1
        if hook.hold:
            hook.release.wait(10)
        status = hook.script.pop(0) if hook.script else 200
        if status == 200:
            hook.bodies.append(json.loads(body))
            hook.headers.append(dict(self.headers))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Hook:
    def __init__(self, script=(), hold=False):
        self.script, self.hold = list(script), hold
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.calls = 0
        self.release = threading.Event()


@pytest.fixture
def webhook():
    """Start an HTTP server in a thread: ``start(hook) -> url``."""
    servers = []

    def start(hook: Hook, tls: ssl.SSLContext | None = None) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), WebhookHandler)
        server.daemon_threads = True
        server.hook = hook
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret-token"

    yield start
    for server in servers:
        server.hook.release.set()
        server.shutdown()
        server.server_close()


def hook_settings(url: str, **changes) -> AlertSettings:
    base = dict(webhook_url=url, timeout_seconds=5.0, max_attempts=3, backoff_seconds=1.0)
    return AlertSettings(**{**base, **changes})


def states(outbox: Outbox, channel: str) -> dict[str, str]:
    return {r["key"]: r["state"] for r in outbox.status() if r["channel"] == channel}


# ---------------------------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kind": "spam"}, "alert kind 'spam'"),
        ({"severity": "urgent"}, "alert severity 'urgent'"),
        ({"key": ""}, "alert key"),
        ({"key": "a\nb"}, "single-line"),
        ({"title": " "}, "non-empty title"),
        ({"details": {"score": {1, 2}}}, "not JSON-serialisable"),
        ({"created_at": "yesterday"}, "not an ISO timestamp"),
    ],
)
def test_alert_new_rejects_bad_fields(changes, message):
    fields = dict(kind="fraud", key="k", title="t", severity="low", details={}, created_at=CREATED)
    with pytest.raises(ValueError, match=message):
        Alert.new(**{**fields, **changes})


def test_alert_new_normalises_created_at_to_utc():
    alert = Alert.new("drift", "drift:1", "PSI up", created_at="2026-05-04T12:00:00+02:00")
    assert alert.created_at == "2026-05-04T10:00:00+00:00"
    assert alert.severity == "medium" and alert.details == {}
    assert Alert.new("drift", "drift:2", "PSI up").created_at.endswith("+00:00")


# ---------------------------------------------------------------------------------------------
# The outbox
# ---------------------------------------------------------------------------------------------


def test_outbox_add_is_idempotent_by_key_and_creates_its_folder(tmp_path):
    outbox = Outbox(tmp_path / "deep" / "alerts" / "outbox.jsonl")
    first = make_alert(1)
    assert outbox.add([first, make_alert(2)]) == [first, make_alert(2)]

    changed = Alert.new("fraud", first.key, "A different title", "critical", {}, CREATED)
    assert outbox.add([changed, make_alert(3)]) == [make_alert(3)]
    assert [a.title for a in outbox.alerts()] == [
        first.title,
        "Suspicious transaction 2",
        "Suspicious transaction 3",
    ]
    assert len(outbox.path.read_text().splitlines()) == 3


def test_outbox_ignores_a_torn_last_line_and_keeps_appending(tmp_path, caplog):
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1)])
    with open(outbox.path, "ab") as handle:
        handle.write(b'{"event": "created", "key": "fraud:torn", "alert": {"kin')

    assert [a.key for a in outbox.alerts()] == [make_alert(1).key]
    assert "skipped 1 unreadable lines" in caplog.text
    outbox.add([make_alert(2)])
    assert [a.key for a in outbox.alerts()] == [make_alert(1).key, make_alert(2).key]


def test_outbox_status_and_record(tmp_path):
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1), make_alert(2)])
    outbox.record(make_alert(1).key, "email", "retry", error="451 try later")
    outbox.record(make_alert(1).key, "email", "sent", message_id="m1")
    outbox.record(make_alert(2).key, "email", "failed", error="550\r\nrejected")

    rows = {(r["key"], r["channel"]): r for r in outbox.status()}
    one, two = rows[(make_alert(1).key, "email")], rows[(make_alert(2).key, "email")]
    assert (one["state"], one["attempts"], one["last_error"]) == ("sent", 2, "451 try later")
    assert one["message_id"] == "m1"
    assert (two["state"], two["last_error"]) == ("failed", "550 rejected")
    assert rows[(make_alert(1).key, "webhook")]["state"] == "pending"
    assert outbox.pending("email") == []

    # Sent is final (a late retry event does not requeue it); failed can be requeued on purpose.
    outbox.record(make_alert(1).key, "email", "retry", error="late event from a slow process")
    outbox.record(make_alert(2).key, "email", "retry", error="requeued after fixing the address")
    assert outbox.pending("email") == [make_alert(2)]
    with pytest.raises(ValueError, match="not in outbox"):
        outbox.record("fraud:unknown", "email", "sent")
    with pytest.raises(ValueError, match="delivery outcome 'done'"):
        outbox.record(make_alert(1).key, "email", "done")


def test_two_outbox_objects_on_one_file_see_each_others_events(tmp_path):
    path = tmp_path / "outbox.jsonl"
    stage, notebook = Outbox(path), Outbox(path)
    stage.add([make_alert(1)])
    assert notebook.add([make_alert(1), make_alert(2)]) == [make_alert(2)]
    notebook.record(make_alert(1).key, "webhook", "sent")
    assert [a.key for a in stage.pending("webhook")] == [make_alert(2).key]


def add_all_alerts(path, keys, start):
    start.wait()
    outbox = Outbox(path)
    for n in keys:
        outbox.add([make_alert(n)])


def test_two_processes_adding_the_same_keys_write_each_once(tmp_path):
    path = tmp_path / "outbox.jsonl"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    keys = range(60)
    workers = [context.Process(target=add_all_alerts, args=(path, keys, start)) for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(20)
    assert [w.exitcode for w in workers] == [0, 0]

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(e["key"] for e in lines) == sorted(make_alert(n).key for n in keys)


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def test_settings_from_dotenv_with_the_environment_winning(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "FRAUDOPS_SMTP_HOST=smtp.bank.example\n"
        "FRAUDOPS_SMTP_USER=alerts\n"
        f"FRAUDOPS_SMTP_PASSWORD={PASSWORD}\n"
        "FRAUDOPS_SMTP_SECURITY=ssl\n"
        "FRAUDOPS_ALERT_FROM=fraudops@bank.example\n"
        "FRAUDOPS_ALERT_TO=a@bank.example, b@bank.example\n"
        "FRAUDOPS_WEBHOOK_URL=https://hooks.example/services/T1/B2/token\n"
    )
    settings = AlertSettings.from_env(environ={}, dotenv_path=dotenv)
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == (
        "smtp.bank.example",
        465,
        "ssl",
    )
    assert settings.recipients == ("a@bank.example", "b@bank.example")
    assert settings.email_enabled and settings.webhook_enabled

    overridden = AlertSettings.from_env(
        environ={
            "FRAUDOPS_SMTP_HOST": "relay.internal",
            "FRAUDOPS_SMTP_PORT": "2525",
            "FRAUDOPS_WEBHOOK_URL": "",
        },
        dotenv_path=dotenv,
    )
    assert (overridden.smtp_host, overridden.smtp_port) == ("relay.internal", 2525)
    assert overridden.smtp_password == PASSWORD
    assert not overridden.webhook_enabled


def test_settings_default_to_outbox_only(tmp_path):
    settings = AlertSettings.from_env(environ={}, dotenv_path=tmp_path / "missing.env")
    assert not settings.email_enabled and not settings.webhook_enabled
    assert settings.smtp_security == "starttls" and settings.smtp_port is None


@pytest.mark.parametrize(
    "environ, variable",
    [
        ({"FRAUDOPS_SMTP_SECURITY": "tls"}, "FRAUDOPS_SMTP_SECURITY"),
        ({"FRAUDOPS_SMTP_PORT": "smtp"}, "FRAUDOPS_SMTP_PORT"),
        ({"FRAUDOPS_SMTP_PORT": "70000"}, "FRAUDOPS_SMTP_PORT"),
        ({"FRAUDOPS_SMTP_USER": "alerts"}, "FRAUDOPS_SMTP_PASSWORD"),
        ({"FRAUDOPS_SMTP_PASSWORD": PASSWORD}, "FRAUDOPS_SMTP_USER"),
        ({"FRAUDOPS_SMTP_HOST": "h", "FRAUDOPS_ALERT_TO": "a@b.example"}, "FRAUDOPS_ALERT_FROM"),
        ({"FRAUDOPS_SMTP_HOST": "h", "FRAUDOPS_ALERT_FROM": "a@b.example"}, "FRAUDOPS_ALERT_TO"),
        ({"FRAUDOPS_ALERT_TO": "a@b.example, not-an-address"}, "FRAUDOPS_ALERT_TO"),
        ({"FRAUDOPS_WEBHOOK_URL": "file:///etc/passwd"}, "FRAUDOPS_WEBHOOK_URL"),
        ({"FRAUDOPS_CA_FILE": "/nonexistent/ca.pem"}, "FRAUDOPS_CA_FILE"),
    ],
)
def test_settings_errors_name_the_variable_and_hide_the_password(environ, variable):
    with pytest.raises(ValueError, match=variable) as caught:
        AlertSettings.from_env(environ=environ, dotenv_path=None)
    assert PASSWORD not in str(caught.value)


def test_settings_repr_hides_the_password_and_the_webhook_token():
    settings = email_settings(
        25,
        smtp_user=USER,
        smtp_password=PASSWORD,
        webhook_url="https://hooks.example/services/T1/B2/tok3n",
    )
    shown = repr(settings)
    assert PASSWORD not in shown and "tok3n" not in shown
    assert "smtp_password='***'" in shown and "hooks.example" in shown
    with pytest.raises(ValueError, match="single e-mail address"):
        email_settings(25, recipients=("a@bank.example\r\nBcc: evil@x.example",))


# ---------------------------------------------------------------------------------------------
# E-mail
# ---------------------------------------------------------------------------------------------


def test_email_immediate_and_digest_then_nothing_twice(tmp_path, smtp_server):
    inbox = Inbox()
    settings = email_settings(smtp_server(inbox))
    alerts = [make_alert(1, "critical"), make_alert(2, "high"), make_alert(3), make_alert(4)]

    report = raise_alerts(alerts, tmp_path / "outbox.jsonl", settings, run_id="run-7")
    assert (report.added, report.messages, report.sent, report.pending) == (
        4,
        3,
        {"email": 4},
        {"email": 0},
    )
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects[0].startswith("[fraudops] CRITICAL fraud alert: Suspicious transaction 1")
    assert subjects[1].startswith("[fraudops] HIGH fraud alert")
    assert subjects[2] == "[fraudops] Alert digest: 2 alerts"
    assert inbox.envelopes[0] == (SENDER, list(ANALYSTS))
    assert all(m.get_content_type() == "text/plain" for m in inbox.messages)
    assert "run: run-7" in inbox.messages[2].get_content()

    again = raise_alerts(alerts, tmp_path / "outbox.jsonl", settings)
    assert (again.added, again.messages, inbox.data_calls) == (0, 0, 3)


def test_email_message_ids_derive_from_alert_keys(tmp_path, smtp_server):
    inbox = Inbox()
    settings = email_settings(smtp_server(inbox))
    raise_alerts([make_alert(1, "high")], tmp_path / "a.jsonl", settings)
    raise_alerts([make_alert(1, "high")], tmp_path / "b.jsonl", settings)
    raise_alerts([make_alert(2, "high")], tmp_path / "c.jsonl", settings)

    ids = [m["Message-ID"] for m in inbox.messages]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("<alert.") and ids[0].endswith("@bank.example>")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_login_with_the_right_password_delivers(tmp_path, smtp_server, caplog):
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    port = smtp_server(
        inbox, authenticator=check_password, auth_required=True, auth_require_tls=False
    )
    settings = email_settings(port, smtp_user=USER, smtp_password=PASSWORD)
    report = raise_alerts([make_alert(1, "high")], tmp_path / "outbox.jsonl", settings)
    assert report.sent == {"email": 1} and len(inbox.messages) == 1
    assert "without TLS" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_wrong_password_is_a_permanent_failure(tmp_path, smtp_server):
    inbox = Inbox()
    port = smtp_server(
        inbox, authenticator=check_password, auth_required=True, auth_require_tls=False
    )
    settings = email_settings(port, smtp_user=USER, smtp_password="wrong")
    sleeps = []
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "high"), make_alert(2)])

    report = deliver(outbox, settings, sleep=sleeps.append)
    assert (report.failed, report.sent, report.pending, sleeps) == (
        {"email": 2},
        {"email": 0},
        {"email": 0},
        [],
    )
    errors = {r["last_error"] for r in outbox.status() if r["channel"] == "email"}
    assert len(errors) == 1 and "535" in errors.pop()

    rerun = deliver(outbox, email_settings(port, smtp_user=USER, smtp_password=PASSWORD))
    assert (rerun.messages, inbox.data_calls) == (0, 0)


def test_email_451_is_retried_with_backoff_and_delivered_once(tmp_path, smtp_server):
    inbox = Inbox(script=["451 4.3.0 Try again later"] * 2)
    settings = email_settings(smtp_server(inbox), max_attempts=4, backoff_seconds=0.5)
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "critical")])
    sleeps = []

    report = deliver(outbox, settings, sleep=sleeps.append)
    assert (report.sent, report.messages, len(inbox.messages)) == ({"email": 1}, 1, 1)
    assert sleeps == [0.5, 1.0]
    (row,) = [r for r in outbox.status() if r["channel"] == "email"]
    assert (row["state"], row["attempts"]) == ("sent", 3) and "451" in row["last_error"]
    assert deliver(outbox, settings, sleep=sleeps.append).messages == 0
    assert inbox.data_calls == 3


def test_email_451_until_attempts_run_out_stays_pending(tmp_path, smtp_server):
    inbox = Inbox(then="451 4.3.0 Mailbox busy")
    settings = email_settings(smtp_server(inbox), max_attempts=2)
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "high"), make_alert(2, "high")])

    report = deliver(outbox, settings, sleep=lambda seconds: None)
    # The first message used both attempts; the channel stops, the second is not tried.
    assert (inbox.data_calls, report.pending, report.failed) == (2, {"email": 2}, {"email": 0})
    assert set(states(outbox, "email").values()) == {"pending"}


def test_email_550_is_failed_and_not_retried_on_rerun(tmp_path, smtp_server):
    inbox = Inbox(then="550 5.7.1 Message rejected by policy")
    settings = email_settings(smtp_server(inbox))
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "high"), make_alert(2), make_alert(3)])

    report = deliver(outbox, settings, sleep=lambda seconds: None)
    assert (report.failed, report.messages, inbox.data_calls) == ({"email": 3}, 0, 2)
    assert set(states(outbox, "email").values()) == {"failed"}
    assert deliver(outbox, settings).messages == 0
    assert inbox.data_calls == 2


def test_email_server_down_then_up_delivers_everything_once(tmp_path, smtp_server):
    port = free_port()
    settings = email_settings(port, max_attempts=4)
    outbox_path = tmp_path / "outbox.jsonl"
    alerts = [make_alert(1, "critical"), make_alert(2), make_alert(3)]
    sleeps = []

    outbox = Outbox(outbox_path)
    outbox.add(alerts)
    down = deliver(outbox, settings, sleep=sleeps.append)
    assert (down.pending, down.sent, down.messages) == ({"email": 3}, {"email": 0}, 0)
    assert sleeps == [1.0, 2.0, 4.0]
    assert "ConnectionRefusedError" in outbox.status()[0]["last_error"]

    inbox = Inbox()
    smtp_server(inbox, port=port)
    up = raise_alerts(alerts, outbox_path, settings)
    assert (up.sent, up.messages, len(inbox.messages)) == ({"email": 3}, 2, 2)
    assert raise_alerts(alerts, outbox_path, settings).messages == 0
    assert inbox.data_calls == 2


def test_email_starttls_with_trusted_certificate_and_login(tmp_path, smtp_server, tls_files):
    inbox = Inbox()
    port = smtp_server(
        inbox,
        tls_context=server_tls_context(tls_files),
        require_starttls=True,
        authenticator=check_password,
        auth_required=True,
    )
    trusting = email_settings(
        port,
        smtp_security="starttls",
        smtp_user=USER,
        smtp_password=PASSWORD,
        ca_file=str(tls_files[0]),
    )
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "high")])

    untrusting = email_settings(port, smtp_security="starttls", max_attempts=1)
    refused = deliver(outbox, untrusting)
    assert refused.pending == {"email": 1} and inbox.data_calls == 0
    assert "CERTIFICATE_VERIFY_FAILED" in outbox.status()[0]["last_error"]

    assert deliver(outbox, trusting).sent == {"email": 1}
    assert len(inbox.messages) == 1


def test_email_implicit_ssl(tmp_path, smtp_server, tls_files):
    inbox = Inbox()
    port = smtp_server(inbox, ssl_context=server_tls_context(tls_files))
    settings = email_settings(port, smtp_security="ssl", ca_file=str(tls_files[0]))
    report = raise_alerts([make_alert(1, "high")], tmp_path / "outbox.jsonl", settings)
    assert report.sent == {"email": 1} and len(inbox.messages) == 1


# ---------------------------------------------------------------------------------------------
# Digest cap
# ---------------------------------------------------------------------------------------------


def test_digest_cap_lists_fifty_and_keeps_the_rest_pending(tmp_path, smtp_server):
    inbox = Inbox()
    settings = email_settings(smtp_server(inbox))
    outbox_path = tmp_path / "outbox.jsonl"
    alerts = [make_alert(n) for n in range(120)]

    first = raise_alerts(alerts, outbox_path, settings, digest_cap=50)
    (digest,) = inbox.messages
    body = digest.get_content()
    assert body.count("[LOW] fraud:") == 50
    assert "70 more alerts not shown; they stay pending" in body
    assert digest["Subject"] == "[fraudops] Alert digest: 50 alerts (70 more pending)"
    assert (first.sent, first.pending, first.messages) == ({"email": 50}, {"email": 70}, 1)

    second = raise_alerts(alerts, outbox_path, settings, digest_cap=50)
    assert second.pending == {"email": 20}
    assert "20 more alerts not shown" in inbox.messages[1].get_content()
    third = raise_alerts(alerts, outbox_path, settings, digest_cap=50)
    assert third.pending == {"email": 0} and "more alerts" not in inbox.messages[2].get_content()
    shown = [line for m in inbox.messages for line in m.get_content().splitlines()]
    assert len({line for line in shown if line.startswith("    key: ")}) == 120


def test_digest_lists_most_severe_first(tmp_path, smtp_server):
    inbox = Inbox()
    settings = email_settings(smtp_server(inbox))
    alerts = [
        make_alert(1, "low"),
        make_alert(2, "medium"),
        make_alert(3, "low"),
        make_alert(4, "medium", kind="drift"),
    ]
    raise_alerts(alerts, tmp_path / "outbox.jsonl", settings, digest_cap=2)

    heads = [line for line in inbox.messages[0].get_content().splitlines() if line[:1] == "["]
    assert heads == [
        "[MEDIUM] drift: Suspicious transaction 4",
        "[MEDIUM] fraud: Suspicious transaction 2",
    ]


# ---------------------------------------------------------------------------------------------
# Webhook
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_webhook_temporary_status_is_retried_then_delivered_once(tmp_path, webhook, status):
    hook = Hook(script=[status])
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "critical"), make_alert(2), make_alert(3)])
    sleeps = []

    report = deliver(outbox, hook_settings(webhook(hook)), sleep=sleeps.append)
    assert (report.sent, report.messages, hook.calls, sleeps) == ({"webhook": 3}, 2, 3, [1.0])
    immediate, digest = hook.bodies
    assert [a["key"] for a in immediate["alerts"]] == [make_alert(1).key]
    assert len(digest["alerts"]) == 2 and digest["text"].startswith("fraudops alert digest")
    assert hook.headers[0]["Idempotency-Key"] == immediate["message_id"]
    assert deliver(outbox, hook_settings(webhook(hook))).messages == 0


def test_webhook_400_is_permanent(tmp_path, webhook):
    hook = Hook(script=[400] * 5)
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1)])

    report = deliver(outbox, hook_settings(webhook(hook)), sleep=lambda seconds: None)
    assert (report.failed, report.pending, hook.calls) == ({"webhook": 1}, {"webhook": 0}, 1)
    assert "HTTP Error 400" in outbox.status()[1]["last_error"]
    assert deliver(outbox, hook_settings(webhook(hook))).messages == 0 and hook.calls == 1


def test_webhook_slower_than_the_timeout_stays_pending(tmp_path, webhook):
    hook = Hook(hold=True)
    url = webhook(hook)
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "high")])
    sleeps = []

    slow = deliver(outbox, hook_settings(url, timeout_seconds=0.2), sleep=sleeps.append)
    assert (slow.pending, slow.sent, sleeps) == ({"webhook": 1}, {"webhook": 0}, [1.0, 2.0])
    assert "timed out" in outbox.status()[1]["last_error"]


def test_webhook_over_https_trusts_only_the_configured_ca(tmp_path, webhook, tls_files):
    hook = Hook()
    url = webhook(hook, tls=server_tls_context(tls_files))
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.add([make_alert(1, "high")])

    untrusted = deliver(outbox, hook_settings(url, max_attempts=1))
    assert untrusted.pending == {"webhook": 1} and hook.calls == 0
    assert "CERTIFICATE_VERIFY_FAILED" in outbox.status()[1]["last_error"]
    trusted = deliver(outbox, hook_settings(url, ca_file=str(tls_files[0])))
    assert trusted.sent == {"webhook": 1} and len(hook.bodies) == 1


def test_email_sent_webhook_down_then_only_webhook_resends(tmp_path, smtp_server, webhook):
    inbox = Inbox()
    port = smtp_server(inbox)
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    outbox_path = tmp_path / "outbox.jsonl"
    alerts = [make_alert(1, "high")]

    first = raise_alerts(
        alerts, outbox_path, email_settings(port, webhook_url=dead_url, max_attempts=1)
    )
    assert first.sent == {"email": 1, "webhook": 0} and first.pending["webhook"] == 1

    hook = Hook()
    second = raise_alerts(alerts, outbox_path, email_settings(port, webhook_url=webhook(hook)))
    assert second.sent == {"email": 0, "webhook": 1}
    assert (len(inbox.messages), len(hook.bodies)) == (1, 1)


# ---------------------------------------------------------------------------------------------
# What leaves the bank
# ---------------------------------------------------------------------------------------------


def test_mask_identifier_keeps_only_the_last_four():
    assert mask_identifier("4111111111115678") == "************5678"
    assert mask_identifier(987654321) == "*****4321"
    assert mask_identifier("C42") == "***"


def risky_alert() -> Alert:
    return Alert.new(
        "fraud",
        "fraud:2026-05-04:tx:777",
        "Card 4111 1111 1111 5678 used abroad\r\nBcc: evil@x.example",
        "critical",
        {
            "customer_id": "CUST-00098765",
            "card": {"pan": "4111111111115678"},
            "accountNumber": 123456789012,
            "note": "<script>alert(1)</script> & more",
            "score": 0.97,
        },
        CREATED,
    )


def test_email_has_no_injected_header_and_masks_identifiers(tmp_path, smtp_server, caplog):
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    raise_alerts([risky_alert()], tmp_path / "outbox.jsonl", email_settings(smtp_server(inbox)))

    (message,) = inbox.messages
    assert message["Bcc"] is None
    assert inbox.envelopes[0][1] == list(ANALYSTS)
    assert "\n" not in message["Subject"] and "Bcc: evil@x.example" in message["Subject"]
    raw = message.as_string() + caplog.text
    for secret in ("CUST-00098765", "4111111111115678", "4111 1111 1111 5678", "123456789012"):
        assert secret not in raw
    body = message.get_content()
    assert "customer_id: *********8765" in body and "************5678" in body
    assert '"pan": "************5678"' in body and "accountNumber: ********9012" in body
    # The outbox keeps the original for the bank's own investigators.
    assert Outbox(tmp_path / "outbox.jsonl").alerts()[0].details["customer_id"] == "CUST-00098765"


def test_webhook_escapes_markup_and_masks_identifiers(tmp_path, webhook):
    hook = Hook()
    raise_alerts([risky_alert()], tmp_path / "outbox.jsonl", hook_settings(webhook(hook)))

    (body,) = hook.bodies
    assert "<script>" not in body["text"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body["text"]
    (sent,) = body["alerts"]
    assert sent["details"]["customer_id"] == "*********8765"
    assert sent["details"]["card"] == {"pan": "************5678"}
    assert sent["details"]["score"] == 0.97
    assert "CUST-00098765" not in json.dumps(body) and "4111111111115678" not in json.dumps(body)


def test_raise_alerts_without_channels_keeps_alerts_in_the_outbox(tmp_path):
    report = raise_alerts(
        [make_alert(1), make_alert(2)], tmp_path / "o" / "outbox.jsonl", AlertSettings()
    )
    assert (report.added, report.messages, report.sent) == (2, 0, {})
    assert len(Outbox(tmp_path / "o" / "outbox.jsonl").pending("email")) == 2
