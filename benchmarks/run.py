"""Benchmarks of the pipeline: wall time and peak memory per stage, papermill's overhead.

Runs in a fresh clone of the project's last commit (so the workspace is untouched), on the
built-in data with the default params. Each stage is timed through DVC and papermill
(`dvc repro --force --single-item STAGE`) and by calling the package directly, ``--repeats``
times each, interleaved so machine noise hits both alike; medians are reported, and the
overhead as the ratio of the two medians. Results go to benchmarks/results.json.

    make benchmark            # or: python benchmarks/run.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGES = ("data", "preprocess", "train", "retrain", "evaluate", "monitor", "score")


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``command`` under GNU time; return wall seconds and peak resident memory in MB."""
    bin_dir = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    run = subprocess.run(
        ["/usr/bin/time", "-v", *command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return seconds, peak_kb / 1024


def machine() -> dict:
    """What the figures were measured on."""
    memory = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(int(memory) / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def benchmark(repeats: int) -> dict:
    """Time every stage both ways, ``repeats`` times; return medians and ratios."""
    with tempfile.TemporaryDirectory(prefix="fraudops-bench-") as scratch:
        project = Path(scratch) / "project"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
        dvc = str(Path(sys.executable).parent / "dvc")
        timed([dvc, "repro"], project)  # warm up: make every stage's inputs once
        samples = {stage: {"papermill": [], "direct": [], "peak_mb": []} for stage in STAGES}
        for _ in range(repeats):
            for stage in STAGES:
                seconds, peak = timed([dvc, "repro", "--force", "--single-item", stage], project)
                samples[stage]["papermill"].append(seconds)
                samples[stage]["peak_mb"].append(peak)
                direct = [sys.executable, str(HERE / "direct_stage.py"), stage]
                samples[stage]["direct"].append(timed(direct, project)[0])
    rows = {}
    for stage, sample in samples.items():
        through, direct = (
            statistics.median(sample["papermill"]),
            statistics.median(sample["direct"]),
        )
        rows[stage] = {
            "dvc_papermill_s": round(through, 2),
            "direct_s": round(direct, 2),
            "overhead_ratio": round(through / direct, 2),
            "peak_rss_mb": round(max(sample["peak_mb"]), 1),
        }
    total = {
        key: round(sum(row[key] for row in rows.values()), 2)
        for key in ("dvc_papermill_s", "direct_s")
    }
    return {"machine": machine(), "repeats": repeats, "stages": rows, "total": total}


def print_table(results: dict) -> None:
    print(f"{'stage':<12}{'dvc+papermill s':>17}{'direct s':>10}{'ratio':>8}{'peak MB':>10}")
    for stage, row in results["stages"].items():
        print(
            f"{stage:<12}{row['dvc_papermill_s']:>17.2f}{row['direct_s']:>10.2f}"
            f"{row['overhead_ratio']:>8.2f}{row['peak_rss_mb']:>10.1f}"
        )
    total = results["total"]
    print(f"{'total':<12}{total['dvc_papermill_s']:>17.2f}{total['direct_s']:>10.2f}")
    print(f"medians of {results['repeats']} runs on {results['machine']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    arguments = parser.parse_args()
    results = benchmark(arguments.repeats)
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
