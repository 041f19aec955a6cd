"""The per-run compliance report an analyst reads and signs off, as Markdown and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from fraudops.io import write_text_atomic

REPORT_DIR = Path("reports/compliance")


def report_sections(run: dict) -> list[tuple[str, object]]:
    """The report's sections in order: (heading, text or table)."""
    identity = pd.DataFrame(
        {
            "item": [
                "run id",
                "scored at",
                "input file",
                "input version (MD5)",
                "model version",
                "model SHA-256",
                "decision threshold",
                "audit log head",
            ],
            "value": [
                run["run_id"],
                run["scored_at"],
                run["input_path"],
                run["input_md5"],
                run["model_version"],
                run["model_sha256"],
                f"{run['threshold']:.4f}",
                run["audit_head"],
            ],
        }
    )
    counts = pd.DataFrame(
        {
            "count": [run["rows"], run["fraud_alerts"], sum(run["rules_fired"].values())],
        },
        index=["transactions scored", "fraud alerts", "compliance rule hits"],
    )
    by_kind = pd.DataFrame(run["alerts_by_kind"].items(), columns=["kind", "alerts"])
    rules = pd.DataFrame(run["rules_fired"].items(), columns=["rule", "transactions"])
    delivery = pd.DataFrame(run["delivery"]).fillna(0).astype(int) if run["delivery"] else None
    sections = [
        ("Run", identity),
        ("Counts", counts),
        ("Alerts by kind", by_kind),
        ("Compliance rules fired", rules if len(rules) else "No compliance rule fired."),
        ("Delivery by channel", delivery if delivery is not None else "No channel configured."),
        ("Delivery failures", run["failures"] if len(run["failures"]) else "None."),
        ("Audit log", run["audit_verdict"]),
    ]
    if run.get("quality"):
        sections.insert(3, ("Alert quality against the labels", pd.DataFrame([run["quality"]])))
    sections.append(("Sign-off", "Reviewed by: ____________________    Date: ____________"))
    return sections


def to_markdown(run: dict) -> str:
    """The report as Markdown."""
    lines = [f"# Compliance report, run {run['run_id']}", ""]
    for heading, body in report_sections(run):
        lines += [f"## {heading}", ""]
        lines.append(_markdown_table(body) if isinstance(body, pd.DataFrame) else str(body))
        lines.append("")
    return "\n".join(lines)


def to_html(run: dict) -> str:
    """The report as a standalone HTML page; every value from the data is escaped."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Compliance report {html.escape(run['run_id'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em}</style>",
        f"</head><body><h1>Compliance report, run {html.escape(run['run_id'])}</h1>",
    ]
    for heading, body in report_sections(run):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(escape=True, border=0))
        else:
            parts.append(f"<p>{html.escape(str(body))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(root, run: dict) -> tuple[Path, Path]:
    """Write ``reports/compliance/report.md`` and ``report.html``."""
    folder = Path(root) / REPORT_DIR
    markdown = write_text_atomic(to_markdown(run), folder / "report.md")
    page = write_text_atomic(to_html(run), folder / "report.html")
    return markdown, page


def _markdown_table(table: pd.DataFrame) -> str:
    frame = table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| " + " | ".join(_cell(value) for value in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def _cell(value) -> str:
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    # Markdown renders raw HTML: a "<" from the data is escaped so it stays text, like a "|".
    for char in "|<>":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")
