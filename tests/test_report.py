"""The compliance report: what it holds, and values from the data kept inert."""

from __future__ import annotations

import html

import pandas as pd
import pytest

from fraudops.report import REPORT_DIR, report_sections, to_html, to_markdown, write_report

HOSTILE_KEY = "compliance:AML-01:tx:<script>alert(1)</script>"
PIPED_ERROR = "SMTPDataError: 451 mailbox | full\nretry later"


def make_run(**changes) -> dict:
    run = {
        "run_id": "20260504T100000Z-abc123",
        "scored_at": "2026-05-04T10:00:05+00:00",
        "input_path": "data/incoming/2026-05-04.parquet",
        "input_md5": "0123456789abcdef0123456789abcdef",
        "model_version": "v0003",
        "model_sha256": "f" * 64,
        "threshold": 0.612345,
        "rows": 4321,
        "fraud_alerts": 17,
        "rules_fired": {"AML-01": 2, "KYC-01": 3},
        "alerts_by_kind": {"fraud": 17, "compliance": 5},
        "delivery": {
            "sent": {"email": 20, "webhook": 22},
            "failed": {"email": 2, "webhook": 0},
            "pending": {"email": 0, "webhook": 0},
        },
        "failures": pd.DataFrame(
            [
                {
                    "key": "fraud:tx:901",
                    "kind": "fraud",
                    "severity": "high",
                    "channel": "email",
                    "state": "failed",
                    "attempts": 1,
                    "last_error": "SMTPRecipientsRefused: 550 no such user",
                },
                {
                    "key": "fraud:tx:902",
                    "kind": "fraud",
                    "severity": "high",
                    "channel": "email",
                    "state": "failed",
                    "attempts": 1,
                    "last_error": "SMTPRecipientsRefused: 550 no such user",
                },
            ]
        ),
        "pending": 0,
        "audit_head": "a" * 64,
        "audit_verdict": "57 entries, chain intact",
        "audit_ok": True,
        "quality": {},
    }
    return {**run, **changes}


def hostile_failures() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "key": HOSTILE_KEY,
                "kind": "compliance",
                "severity": "high",
                "channel": "webhook",
                "state": "failed",
                "attempts": 1,
                "last_error": PIPED_ERROR,
            }
        ]
    )


def markdown_row(text: str, starts: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(starts))


def cells(row: str) -> list[str]:
    """The cells of a Markdown table row, split on unescaped pipes."""
    parts, current, escaped = [], "", False
    for char in row.strip()[1:-1]:
        if char == "|" and not escaped:
            parts.append(current.strip())
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    return [*parts, current.strip()]


@pytest.mark.parametrize("render", [to_markdown, to_html])
def test_report_names_run_versions_counts_kinds_and_failures(render):
    text = render(make_run())

    for value in (
        "20260504T100000Z-abc123",
        "data/incoming/2026-05-04.parquet",
        "0123456789abcdef0123456789abcdef",
        "v0003",
        "f" * 64,
        "0.6123",
        "a" * 64,
        "4321",
        "57 entries, chain intact",
        "fraud:tx:901",
        "SMTPRecipientsRefused: 550 no such user",
        "Sign-off",
    ):
        assert value in text, value
    for heading in ("Run", "Counts", "Alerts by kind", "Delivery by channel", "Delivery failures"):
        assert heading in text


def test_markdown_tables_hold_counts_kinds_rules_and_delivery():
    text = to_markdown(make_run())

    assert text.startswith("# Compliance report, run 20260504T100000Z-abc123\n")
    assert cells(markdown_row(text, "| transactions scored")) == ["transactions scored", "4321"]
    assert cells(markdown_row(text, "| fraud alerts")) == ["fraud alerts", "17"]
    assert cells(markdown_row(text, "| compliance rule hits")) == ["compliance rule hits", "5"]
    assert cells(markdown_row(text, "| fraud |")) == ["fraud", "17"]
    assert cells(markdown_row(text, "| compliance |")) == ["compliance", "5"]
    assert cells(markdown_row(text, "| KYC-01")) == ["KYC-01", "3"]
    assert cells(markdown_row(text, "| email")) == ["email", "20", "2", "0"]
    assert cells(markdown_row(text, "| fraud:tx:902"))[:5] == [
        "fraud:tx:902",
        "fraud",
        "high",
        "email",
        "failed",
    ]


def test_report_says_when_nothing_fired_no_channel_and_no_failure():
    run = make_run(rules_fired={}, delivery={}, failures=pd.DataFrame())
    sections = dict(report_sections(run))

    assert sections["Compliance rules fired"] == "No compliance rule fired."
    assert sections["Delivery by channel"] == "No channel configured."
    assert sections["Delivery failures"] == "None."
    text = to_markdown(run)
    assert "No channel configured." in text and "| fraud alerts | 17 |" in text


def test_report_shows_alert_quality_only_when_labels_were_known():
    quality = {
        "labelled_rows": 40,
        "frauds": 4,
        "fraud_alerts": 5,
        "precision": 0.6,
        "recall": 0.75,
    }
    assert "Alert quality" not in to_markdown(make_run())

    text = to_markdown(make_run(quality=quality))
    assert "## Alert quality against the labels" in text
    assert cells(markdown_row(text, "| 40")) == ["40", "4", "5", "0.6000", "0.7500"]


def test_html_escapes_markup_from_the_data():
    run = make_run(
        failures=hostile_failures(),
        input_path="data/incoming/<img src=x onerror=alert(2)>.csv",
        rules_fired={"<b>AML-01</b>": 1},
    )
    page = to_html(run)

    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert html.escape(HOSTILE_KEY, quote=False) in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    tables = [body for _, body in report_sections(run) if isinstance(body, pd.DataFrame)]
    assert page.count("<table") == len(tables)


def test_markdown_escapes_pipes_newlines_and_markup_from_the_data():
    text = to_markdown(make_run(failures=hostile_failures()))

    row = markdown_row(text, "| compliance:AML-01")
    assert len(cells(row)) == 7
    assert cells(row)[6] == "SMTPDataError: 451 mailbox \\| full retry later"
    # Markdown passes raw HTML through to the page it renders: markup must arrive as text.
    assert "<script>" not in text
    assert "\\<script\\>alert(1)\\</script\\>" in cells(row)[0]


def test_write_report_writes_both_files(tmp_path):
    markdown, page = write_report(tmp_path, make_run())

    folder = tmp_path / REPORT_DIR
    assert (markdown, page) == (folder / "report.md", folder / "report.html")
    assert markdown.read_text() == to_markdown(make_run())
    assert page.read_text().startswith("<!DOCTYPE html>") and page.read_text().endswith("</html>")
    assert sorted(p.name for p in markdown.parent.iterdir()) == ["report.html", "report.md"]
