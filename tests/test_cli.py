"""The ``fraudops`` command line: the score command as a real process, the others in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from fraudops import cli, paths
from fraudops.alerts import Outbox
from fraudops.audit import verify
from fraudops.registry import PRODUCTION_CARD, PRODUCTION_MODEL, Registry

AUDIT = "reports/audit/audit.jsonl"


def fraudops(root, *arguments: str) -> subprocess.CompletedProcess:
    """Run the command line in ``root`` as a new process, with no alert channel configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
    return subprocess.run(
        [sys.executable, "-m", "fraudops.cli", *arguments],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def run_here(scoring_project, monkeypatch, capsys):
    """Run the command line in-process from the scoring project: ``(code, stdout, stderr)``."""
    monkeypatch.chdir(scoring_project)

    def run(*arguments: str) -> tuple[int, str, str]:
        code = cli.main(list(arguments))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def small_batch(root, rows: int = 400) -> pd.DataFrame:
    return pd.read_parquet(root / paths.SCORE_BATCH).head(rows)


# ---------------------------------------------------------------------------------------------
# Help
# ---------------------------------------------------------------------------------------------


def test_help_lists_the_commands_and_the_score_exit_codes(tmp_path):
    overview = fraudops(tmp_path, "--help")
    assert overview.returncode == 0, overview.stderr
    for command in ("score", "audit", "registry", "refresh-notebooks"):
        assert command in overview.stdout

    score = fraudops(tmp_path, "score", "--help")
    assert score.returncode == 0, score.stderr
    assert "--out" in score.stdout and "--chunk-rows" in score.stdout
    assert "3 model file refused" in " ".join(score.stdout.split())


def test_score_without_out_is_a_usage_error(run_here):
    with pytest.raises(SystemExit) as caught:
        run_here("score", "batch.parquet")
    assert caught.value.code == cli.EXIT_USAGE == 2


# ---------------------------------------------------------------------------------------------
# fraudops score
# ---------------------------------------------------------------------------------------------


def test_score_a_good_file_writes_the_output_and_exits_0(scoring_project):
    small_batch(scoring_project).to_csv(scoring_project / "batch.csv", index=False)

    done = fraudops(
        scoring_project, "score", "batch.csv", "--out", "out/scored.parquet", "--no-progress"
    )
    assert done.returncode == 0, done.stderr
    scored = pd.read_parquet(scoring_project / "out" / "scored.parquet")
    assert (
        scored["transaction_id"].tolist()
        == small_batch(scoring_project)["transaction_id"].tolist()
    )
    assert scored["score"].between(0, 1).all()
    assert "scored 400 transactions with model v0002" in done.stdout
    report = (scoring_project / "reports" / "compliance" / "report.md").read_text()
    assert "| transactions scored | 400 |" in report
    assert verify(scoring_project / AUDIT).ok


def test_score_a_bad_file_exits_1_naming_file_column_and_rule(scoring_project):
    bad = small_batch(scoring_project).rename(columns={"amount": "tx_amount"})
    bad.loc[[10, 20, 30], "tx_amount"] = -1.0
    bad.to_csv(scoring_project / "bad.csv", index=False)
    entries_before = verify(scoring_project / AUDIT).entries

    done = fraudops(
        scoring_project,
        "score",
        "bad.csv",
        "--out",
        "scored.parquet",
        "--columns",
        "amount=tx_amount",
        "--no-progress",
    )
    assert done.returncode == cli.EXIT_BAD_INPUT == 1
    assert str(scoring_project / "bad.csv") in done.stderr
    assert (
        "column 'amount' (file column 'tx_amount'): rule 'amount is not negative' broken by 3 rows"
        in done.stderr
    )
    assert not (scoring_project / "scored.parquet").exists()
    assert list(scoring_project.glob(".scored.parquet.*")) == []
    assert verify(scoring_project / AUDIT).entries == entries_before
    failures = [
        alert
        for alert in Outbox(scoring_project / "reports/alerts/outbox.jsonl").alerts()
        if alert.kind == "pipeline_failure"
    ]
    assert len(failures) == 1 and "amount is not negative" in failures[0].details["error"]


def test_score_refuses_a_tampered_production_model_with_exit_3(scoring_project):
    small_batch(scoring_project).to_parquet(scoring_project / "batch.parquet")
    with open(scoring_project / PRODUCTION_MODEL, "ab") as model:
        model.write(b"\0")

    done = fraudops(scoring_project, "score", "batch.parquet", "--out", "s.parquet")
    assert done.returncode == cli.EXIT_MODEL == 3
    assert str(PRODUCTION_MODEL) in done.stderr and "refusing to load it" in done.stderr
    assert not (scoring_project / "s.parquet").exists()


def test_score_uses_the_published_production_model(scoring_project):
    # models/production is the DVC output scoring depends on; it wins over the registry index.
    Registry(scoring_project).promote("v0001", "a test moves the index only")
    small_batch(scoring_project).to_parquet(scoring_project / "batch.parquet")

    done = fraudops(scoring_project, "score", "batch.parquet", "--out", "s.parquet")
    assert done.returncode == 0, done.stderr
    published = json.loads((scoring_project / PRODUCTION_CARD).read_text())["version"]
    assert published == "v0002"
    assert f"with model {published}" in done.stdout


# ---------------------------------------------------------------------------------------------
# fraudops audit verify
# ---------------------------------------------------------------------------------------------


def test_audit_verify_exits_0_on_an_intact_log_and_5_after_an_edit(run_here, scoring_project):
    code, out, _ = run_here("audit", "verify")
    assert code == 0 and "chain intact" in out

    log = scoring_project / AUDIT
    lines = log.read_text().splitlines(keepends=True)
    assert len(lines) >= 2
    lines[1] = lines[1].replace('"event":"model_', '"event":"edited_')
    log.write_text("".join(lines))

    code, out, _ = run_here("audit", "verify")
    assert code == cli.EXIT_AUDIT == 5
    assert "line 2: hash does not match its content (edited?)" in out


def test_audit_verify_with_a_head_kept_elsewhere_catches_a_cut_log(run_here, scoring_project):
    log = scoring_project / AUDIT
    lines = log.read_text().splitlines(keepends=True)
    head = json.loads(lines[-1])["hash"]
    log.write_text("".join(lines[:-1]))

    code, out, _ = run_here("audit", "verify", str(log), "--head", head)
    assert code == 5 and "truncated at the end" in out


# ---------------------------------------------------------------------------------------------
# fraudops registry
# ---------------------------------------------------------------------------------------------


def test_registry_list_rollback_and_unpin(run_here, scoring_project):
    code, out, _ = run_here("registry", "list")
    assert code == 0
    assert "* v0002" in out and "  v0001" in out and out.rstrip().endswith("production: v0002")

    code, out, _ = run_here("registry", "rollback", "v0001")
    assert code == 0 and "production is now v0001, pinned" in out
    state = Registry(scoring_project).state()
    assert (state["production"], state["pinned"]) == ("v0001", True)
    card = json.loads((scoring_project / PRODUCTION_CARD).read_text())
    assert card["version"] == "v0001"
    code, out, _ = run_here("registry", "list")
    assert "* v0001" in out and "production: v0001 (pinned)" in out

    code, out, _ = run_here("registry", "unpin")
    assert code == 0 and "unpinned" in out
    assert Registry(scoring_project).state()["pinned"] is False
    assert run_here("registry", "list")[1].rstrip().endswith("production: v0001")


def test_registry_rollback_to_an_unknown_version_exits_1_naming_the_known(
    run_here, scoring_project
):
    code, out, err = run_here("registry", "rollback", "v0099")
    assert code == cli.EXIT_BAD_INPUT == 1
    assert "v0099" in err and "known: v0001, v0002" in err
    assert Registry(scoring_project).production() == "v0002"
    assert out == ""
