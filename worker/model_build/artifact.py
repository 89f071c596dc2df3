"""The shipped model artifact: manifest writing and checking (torch-free, used by the runtime too).

Layout (docs/INTERNALS.md, "Model artifact"): ``manifest.json`` + ``tokenizer.json`` + ONNX files,
each listed in ``manifest["files"]`` with its sha256 and size so a corrupt or truncated download is
caught before ONNX Runtime sees it, with an error that names the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"
REQUIRED_KEYS = ("name", "version", "files", "onnx", "labels")


class ArtifactError(RuntimeError):
    """The model artifact is missing, corrupt or inconsistent; the message names the path."""


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(model_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {sha256, bytes}}`` for the given files of ``model_dir``."""
    entries: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        path = model_dir / name
        entries[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return entries


def write_manifest(model_dir: Path, manifest: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """Fill in ``files`` (hashes and sizes) and write ``manifest.json``; returns the written manifest."""
    manifest = dict(manifest)
    manifest["files"] = file_entries(model_dir, files)
    (model_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def manifest_sha256(model_dir: Path) -> str:
    """Identity of an artifact: the sha256 of its manifest (which pins every file's sha256)."""
    return sha256_file(Path(model_dir) / MANIFEST_NAME)


@dataclass(frozen=True)
class Artifact:
    """A checked model folder: its manifest and resolved file paths."""

    model_dir: Path
    manifest: dict[str, Any]

    def onnx_path(self, target: str = "cpu") -> Path:
        onnx = self.manifest["onnx"]
        name = onnx.get(target) or onnx.get("cpu")
        if not name:
            raise ArtifactError(f"{self.model_dir / MANIFEST_NAME}: no ONNX file for target {target!r}")
        return self.model_dir / name

    @property
    def tokenizer_path(self) -> Path:
        return self.model_dir / TOKENIZER_NAME

    @property
    def labels(self) -> dict[str, list[str]]:
        return dict(self.manifest.get("labels") or {})

    @property
    def max_tokens(self) -> int:
        return int(self.manifest.get("architecture", {}).get("max_tokens", 128))

    @property
    def sha256(self) -> str:
        return manifest_sha256(self.model_dir)

    @property
    def activation_scales(self) -> str:
        """ "fixed" (calibrated: a row's outputs do not depend on its batch-mates) or "dynamic"."""
        scales = (self.manifest.get("cpu_graph") or {}).get("activation_scales") or {}
        return "fixed" if scales.get("mode") == "fixed" else "dynamic"


def load_manifest(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(
            f"model manifest not found: {path} (set FINSIGNAL_MODEL_DIR / --model-dir to a folder "
            "built by `finsignal model build` or `finsignal model export`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"model manifest {path} is not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"model manifest {path} must hold a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ArtifactError(f"model manifest {path} lacks {', '.join(missing)}")
    return manifest


def verify_artifact(model_dir: Path, files: list[str] | None = None, check_hashes: bool = True) -> Artifact:
    """Load the manifest and check that the listed files exist with the recorded size and sha256.

    ``files`` limits the check to some of them (e.g. only the CPU model and the tokenizer); every
    file the caller names must be listed in the manifest.
    """
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    listed: dict[str, dict[str, Any]] = manifest["files"]
    wanted = list(listed) if files is None else files
    for name in wanted:
        path = model_dir / name
        entry = listed.get(name)
        if entry is None:
            raise ArtifactError(f"{path} is not listed in {model_dir / MANIFEST_NAME}")
        if not path.is_file():
            raise ArtifactError(f"model file missing: {path} (listed in {model_dir / MANIFEST_NAME})")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ArtifactError(
                f"model file {path} has {size} bytes, manifest says {entry.get('bytes')}: "
                "corrupt or truncated; rebuild or re-download the model"
            )
        if check_hashes and sha256_file(path) != entry.get("sha256"):
            raise ArtifactError(
                f"model file {path} does not match its sha256 in the manifest: corrupt; "
                "rebuild or re-download the model"
            )
    return Artifact(model_dir=model_dir, manifest=manifest)
