"""Scoring throughput, peak memory and single-transaction latency.

Runs in a fresh clone of the last commit after `dvc repro retrain` (so a production model
exists).
Batches of 100k, 1M and 10M transactions are made by repeating the built-in score batch
forward in time (new ids, each copy 14 days after the previous), so cards keep their
history and the stream stays in time order. Each batch is scored by `fraudops score`-style
chunked scoring in its own process under GNU time; the table gives transactions per second
(features, model and compliance rules included) and the peak resident memory. The 1M
batch's features are also timed on their own, and single transactions one at a time.

    python benchmarks/scoring.py            # writes benchmarks/scoring.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import machine, timed  # noqa: E402

SIZES = (100_000, 1_000_000, 10_000_000)
FEATURE_SIZE = 1_000_000  # the batch whose features are also timed on their own

SCORE_ONE = """
import sys, time, json
from pathlib import Path
import yaml
from fraudops import paths
from fraudops.rules import read_watchlist, rules_from_params
from fraudops.scoring import score_batch
root = Path.cwd()
params = yaml.safe_load(open("params.yaml"))
rules = rules_from_params(params["rules"])
watchlist = read_watchlist(root / params["score"]["watchlist"])
started = time.perf_counter()
result = score_batch(root, input_path=Path(sys.argv[1]), output_path=Path(sys.argv[2]),
                     rules=rules, watchlist=watchlist, chunk_rows=params["score"]["chunk_rows"],
                     progress=False)
print(json.dumps({"rows": result.rows, "seconds": time.perf_counter() - started}))
"""


def make_batch(source: Path, rows: int, target: Path) -> None:
    """Repeat ``source`` forward in time until ``rows`` transactions, writing as we go."""
    base = pd.read_parquet(source)
    span = pd.Timedelta(days=14)
    id_step = int(base["transaction_id"].max() - base["transaction_id"].min() + 1)
    writer, written, copy = None, 0, 0
    while written < rows:
        part = base.iloc[: rows - written].copy()
        part["timestamp"] = part["timestamp"] + span * copy
        part["transaction_id"] = part["transaction_id"] + id_step * copy
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
        written += len(part)
        copy += 1
    writer.close()


FEATURES_ONLY = """
import sys, time, json
from pathlib import Path
import pandas as pd
from fraudops.features import add_features, parse_windows
from fraudops.scoring import ProductionModel, known_transactions
root = Path.cwd()
model = ProductionModel.load(root)
known = known_transactions(root, model.reach_days)
batch = pd.read_parquet(sys.argv[1])
started = time.perf_counter()
add_features(batch, model.card_windows, context=known, **model.terminal)
print(json.dumps({"rows": len(batch), "seconds": time.perf_counter() - started}))
"""


def feature_seconds(project: Path, batch: Path) -> float:
    """Seconds to compute the card and terminal features of ``batch`` in one call."""
    run = subprocess.run(
        [sys.executable, "-c", FEATURES_ONLY, str(batch)],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])["seconds"]


def latency(project: Path, samples: int) -> dict:
    """Seconds to score one transaction, the labelled history already in memory.

    Each transaction's features are computed from the earlier rows of its card and terminal
    (``related_context``), as a service answering one payment at a time would.
    """
    code = f"""
import json, time
from pathlib import Path
import numpy as np
from fraudops import paths
from fraudops.data import read_canonical
from fraudops.scoring import ProductionModel, known_transactions, related_context
root = Path.cwd()
model = ProductionModel.load(root)
known = known_transactions(root, model.reach_days)
batch = read_canonical(root, paths.SCORE_BATCH).head({samples})
times = []
for position in range(len(batch)):
    row = batch.iloc[[position]]
    started = time.perf_counter()
    model.scores(row, related_context(row, known))
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
    )
    times = np.array(json.loads(run.stdout.strip().splitlines()[-1]))
    return {
        "median_ms": round(1000 * float(np.median(times)), 2),
        "p99_ms": round(1000 * float(np.quantile(times, 0.99)), 2),
        "samples": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--out", type=Path, default=HERE / "scoring.json")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fraudops-score-bench-") as scratch:
        project = Path(scratch) / "project"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
        dvc = str(Path(sys.executable).parent / "dvc")
        timed([dvc, "repro", "retrain"], project)
        rows, features = [], None
        for size in arguments.sizes:
            batch = Path(scratch) / f"batch_{size}.parquet"
            make_batch(project / "data/raw/score_batch.parquet", size, batch)
            started = time.perf_counter()
            seconds, peak = timed(
                [sys.executable, "-c", SCORE_ONE, str(batch), str(Path(scratch) / "out.parquet")],
                project,
            )
            rows.append(
                {
                    "transactions": size,
                    "seconds": round(seconds, 1),
                    "per_second": round(size / seconds),
                    "peak_rss_mb": round(peak, 1),
                }
            )
            if size == FEATURE_SIZE:
                features = {
                    "transactions": size,
                    "seconds": round(feature_seconds(project, batch), 2),
                }
            print(rows[-1], f"({time.perf_counter() - started:.0f} s)", flush=True)
            batch.unlink()
        one = latency(project, 300)
    results = {
        "machine": machine(),
        "batches": rows,
        "features_only": features,
        "single_transaction": one,
    }
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'transactions':>14}{'seconds':>10}{'tx/s':>10}{'peak MB':>10}")
    for row in rows:
        print(
            f"{row['transactions']:>14,}{row['seconds']:>10.1f}{row['per_second']:>10,}"
            f"{row['peak_rss_mb']:>10.1f}"
        )
    if features:
        print(
            f"features alone for {features['transactions']:,} transactions: "
            f"{features['seconds']} s"
        )
    print(f"one transaction: median {one['median_ms']} ms, p99 {one['p99_ms']} ms")


if __name__ == "__main__":
    main()
