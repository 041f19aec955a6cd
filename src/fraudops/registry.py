"""The model registry: every trained model with its card, and which one is in production.

The registry lives in ``models/registry/`` and is kept across runs (DVC does not own it):
one folder per version with the model file, its card as JSON and as Markdown, and
``registry.json`` listing every version and the production one. The stages copy the
production model to ``models/production/``, the DVC output that scoring reads.

Rolling back is one command, ``fraudops registry rollback VERSION``: it makes an earlier
version production and pins it, so a later retrain keeps it until ``fraudops registry unpin``.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

from fraudops import paths
from fraudops.io import atomic_path, file_digest, write_json_atomic, write_text_atomic
from fraudops.model import load_model, sha256

logger = logging.getLogger(__name__)

REGISTRY_DIR = paths.MODELS_DIR / "registry"
REGISTRY_FILE = REGISTRY_DIR / "registry.json"
PRODUCTION_DIR = paths.MODELS_DIR / "production"
PRODUCTION_MODEL = PRODUCTION_DIR / "model.skops"
PRODUCTION_CARD = PRODUCTION_DIR / "model.json"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unknown version, nothing in production...)."""


def file_md5(path: str | Path) -> str:
    """The MD5 of a file, as DVC records it for a data file."""
    return file_digest(path, "md5")


def data_version(root: Path, inputs: list[Path]) -> dict[str, str]:
    """The DVC hashes (MD5) of a model's input files, by path."""
    return {str(path): file_md5(root / path) for path in inputs}


class Registry:
    """Every version's model and card, and the production pointer, under ``models/registry``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.folder = self.root / REGISTRY_DIR
        self.file = self.root / REGISTRY_FILE

    def state(self) -> dict:
        """The registry's index: versions, production version and whether it is pinned."""
        if not self.file.exists():
            return {"production": None, "pinned": False, "versions": []}
        return json.loads(self.file.read_text())

    def versions(self) -> list[dict]:
        return self.state()["versions"]

    def production(self) -> str | None:
        return self.state()["production"]

    def card(self, version: str) -> dict:
        """The card of ``version``."""
        path = self.folder / version / "model.json"
        if not path.exists():
            known = ", ".join(v["version"] for v in self.versions()) or "none"
            raise RegistryError(f"no model version {version!r} in {self.folder}; known: {known}")
        return json.loads(path.read_text())

    def load(self, version: str):
        """The Pipeline and card of ``version``, checked against its recorded SHA-256."""
        self.card(version)
        folder = self.folder / version
        return load_model(folder / "model.skops", folder / "model.json")

    def register(self, model_file: Path, card: dict) -> str:
        """Copy a saved model into the registry as a new version; return the version."""
        state = self.state()
        number = len(state["versions"]) + 1
        # A run that crashed after making a folder but before recording it leaves the folder
        # behind: skip such numbers rather than fail every later run.
        while (self.folder / f"v{number:04d}").exists():
            number += 1
        version = f"v{number:04d}"
        folder = self.folder / version
        folder.mkdir(parents=True, exist_ok=False)
        with atomic_path(folder / "model.skops") as tmp:
            shutil.copyfile(model_file, tmp)
        card = {**card, "version": version, "sha256": sha256(folder / "model.skops")}
        card.setdefault("registered_at", _now())
        write_json_atomic(card, folder / "model.json")
        write_text_atomic(model_card_markdown(card), folder / "MODEL_CARD.md")
        state["versions"].append(_summary(card))
        self._write(state)
        logger.info("registered %s (%s)", version, card.get("model_type"))
        return version

    def update_card(self, version: str, **fields) -> dict:
        """Add fields (the promotion decision, say) to a version's card and its summary."""
        card = {**self.card(version), **fields}
        folder = self.folder / version
        write_json_atomic(card, folder / "model.json")
        write_text_atomic(model_card_markdown(card), folder / "MODEL_CARD.md")
        state = self.state()
        state["versions"] = [
            _summary(card) if v["version"] == version else v for v in state["versions"]
        ]
        self._write(state)
        return card

    def promote(self, version: str, reason: str, pinned: bool = False) -> None:
        """Make ``version`` the production model."""
        self.card(version)
        state = self.state()
        state.update(production=version, pinned=pinned, changed_at=_now(), reason=reason)
        self._write(state)
        logger.info("production model is now %s: %s", version, reason)

    def rollback(self, version: str) -> None:
        """Make an earlier version production again, and pin it against automatic promotion."""
        self.promote(version, f"rolled back to {version} by hand", pinned=True)
        self.publish()

    def unpin(self) -> None:
        """Let the next retrain promote a better challenger again."""
        state = self.state()
        state["pinned"] = False
        self._write(state)

    def publish(self) -> Path:
        """Copy the production version to ``models/production/`` (atomically, file by file)."""
        version = self.production()
        if version is None:
            raise RegistryError("no model is in production yet: run `dvc repro retrain`")
        source = self.folder / version
        target = self.root / PRODUCTION_DIR
        target.mkdir(parents=True, exist_ok=True)
        for name in ("model.skops", "model.json", "MODEL_CARD.md"):
            with atomic_path(target / name) as tmp:
                shutil.copyfile(source / name, tmp)
        return target

    def _write(self, state: dict) -> None:
        write_json_atomic(state, self.file)


def _summary(card: dict) -> dict:
    keys = ("version", "model_type", "registered_at", "sha256", "training_window", "decision")
    summary = {key: card.get(key) for key in keys}
    summary["metrics"] = card.get("metrics", {})
    return summary


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def model_card_markdown(card: dict) -> str:
    """A readable model card: what the model is, what it learned from, how well it does."""
    metrics = card.get("metrics", {})
    decision = card.get("decision") or {}
    lines = [
        f"# Model card: {card.get('version', '(unregistered)')}",
        "",
        f"- **Model type:** {card.get('model_type')}",
        f"- **Registered:** {card.get('registered_at')}",
        f"- **Role:** {card.get('role', 'challenger')}",
        f"- **Training window:** {' to '.join(card.get('training_window', []))}",
        f"- **Training rows:** {card.get('training_rows', 0):,} "
        f"({card.get('training_fraud_rate', 0):.3%} fraud)",
        f"- **Threshold:** {card.get('threshold', {}).get('threshold', 'not chosen')}",
        f"- **SHA-256:** `{card.get('sha256')}`",
        "",
        "## Data version (DVC MD5 of the inputs)",
        "",
        *(f"- `{path}`: `{digest}`" for path, digest in card.get("data_version", {}).items()),
        "",
        "## Metrics on the evaluation window",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_format(value)} |" for name, value in metrics.items()),
        "",
        "## Promotion decision",
        "",
        f"{decision.get('outcome', 'none')}: {decision.get('reason', '')}",
        "",
        "## Parameters",
        "",
        "```json",
        json.dumps(card.get("hyperparameters", {}), indent=2, sort_keys=True),
        "```",
        "",
        "## Features",
        "",
        ", ".join(
            card.get("features", {}).get("numeric", [])
            + card.get("features", {}).get("categorical", [])
        ),
        "",
    ]
    return "\n".join(lines)


def _format(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
