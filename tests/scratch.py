"""A scratch copy of the project, so notebook and pipeline tests never touch the workspace."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def project_files() -> list[str]:
    """The project's files as git sees them: tracked, plus new files not ignored."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [name for name in listing.stdout.splitlines() if (ROOT / name).is_file()]


def copy_project(target: Path, with_git: bool = True) -> Path:
    """Copy the project's files (not its DVC outputs or venv) to ``target``; commit them."""
    for name in project_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    if with_git:
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
        subprocess.run(["git", "init", "-q"], cwd=target, check=True)
        subprocess.run([*git, "add", "-A"], cwd=target, check=True)
        subprocess.run([*git, "commit", "-qm", "scratch"], cwd=target, check=True)
    return target


def update_params(root: Path, overrides: dict[str, object]) -> None:
    """Set ``section.key`` values in ``root/params.yaml``."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = params
        for section in sections:
            node = node[section]
        node[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
