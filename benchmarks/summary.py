"""Print the benchmark results as Markdown tables, the ones the README shows.

Reads what the benchmarks wrote (results.json, model_choice.json, scoring.json, each beside
this file) and prints one table per benchmark, with the machine it was measured on. A
benchmark that has not been run is named as missing.

    python benchmarks/summary.py          # `make benchmark` runs it last
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> dict | None:
    path = HERE / name
    return json.loads(path.read_text()) if path.exists() else None


def machine_line(results: dict) -> str:
    machine = results["machine"]
    return (
        f"{machine['cpus']} cores, {machine['memory_gb']} GB, Python {machine['python']}, "
        f"{machine['platform']}"
    )


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def stages(results: dict) -> str:
    rows = [
        [
            stage,
            f"{row['dvc_papermill_s']:.1f}",
            f"{row['direct_s']:.1f}",
            f"{row['overhead_ratio']:.2f}",
            f"{row['peak_rss_mb']:.0f}",
        ]
        for stage, row in results["stages"].items()
    ]
    total = results["total"]
    rows.append(["all", f"{total['dvc_papermill_s']:.1f}", f"{total['direct_s']:.1f}", "", ""])
    header = ["stage", "dvc + papermill (s)", "package directly (s)", "ratio", "peak RSS (MB)"]
    return f"**Stages** (`benchmarks/run.py`, medians of {results['repeats']} runs)\n\n" + table(
        header, rows
    )


def models(results: dict, key: str, title: str) -> str:
    part = results[key]["results"]
    first = next(iter(part.values()))
    header = ["model", "features", "average precision", "ROC AUC"]
    with_cards = first.get("card_precision_at_30") is not None
    header += ["card precision@30"] if with_cards else []
    header += ["fit (s)", "iterations"]
    rows = []
    for name, row in part.items():
        cells = [name, row["features"], f"{row['average_precision']:.3f}", f"{row['roc_auc']:.3f}"]
        cells += [f"{row['card_precision_at_30']:.3f}"] if with_cards else []
        cells += [f"{row['fit_seconds']:.1f}", row["boosting_iterations"] or ""]
        rows.append(cells)
    return (
        f"**{title}** (`benchmarks/model_choice.py`: train {first['train_rows']:,} rows, "
        f"test {first['test_rows']:,} rows with {first['test_frauds']} frauds; fit times "
        f"medians of {results['repeats']})\n\n" + table(header, rows)
    )


def scoring(results: dict) -> str:
    rows, previous = [], None
    for batch in results["batches"]:
        marginal = ""
        if previous:
            added = batch["transactions"] - previous["transactions"]
            marginal = f"{added / (batch['seconds'] - previous['seconds']):,.0f}"
        rows.append(
            [
                f"{batch['transactions']:,}",
                f"{batch['seconds']:.1f}",
                f"{batch['per_second']:,}",
                marginal,
                f"{batch['peak_rss_mb']:.0f}",
            ]
        )
        previous = batch
    one = results["single_transaction"]
    features = results.get("features_only")
    alone = (
        f" The features alone of {features['transactions']:,} transactions took "
        f"{features['seconds']} s."
        if features
        else ""
    )
    header = ["transactions", "seconds", "tx/s", "tx/s over the previous size", "peak RSS (MB)"]
    return (
        "**Scoring** (`benchmarks/scoring.py`: features, model and compliance rules, "
        "in chunks)\n\n"
        + table(header, rows)
        + f"\n\nOne transaction: median {one['median_ms']} ms, p99 {one['p99_ms']} ms "
        f"({one['samples']} transactions).{alone}"
    )


def main() -> None:
    sections = []
    for name, render in (
        ("results.json", stages),
        ("model_choice.json", lambda r: models(r, "built_in", "Models on the built-in data")),
        ("model_choice.json", lambda r: models(r, "ulb_columns", "Models on the ULB columns")),
        ("scoring.json", scoring),
    ):
        results = load(name)
        if results is None:
            sections.append(f"*{name} is missing: run `make benchmark`.*")
            continue
        sections.append(render(results) + f"\n\nMeasured on: {machine_line(results)}.")
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
