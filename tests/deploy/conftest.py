"""promtool (Prometheus' rule checker and rule unit-test runner) for the deployment tests.

Found on PATH or $PROMTOOL; otherwise taken out of Debian's `prometheus` package with
`apt-get download` + `dpkg-deb -x` into .cache/promtool (no daemon installed, nothing started).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.deploy.chart import REPO_ROOT

PROMTOOL_CACHE = REPO_ROOT / ".cache" / "promtool"


def _extract_from_debian_package() -> Path | None:
    target = PROMTOOL_CACHE / "usr" / "bin" / "promtool"
    if target.is_file():
        return target
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return None
    with tempfile.TemporaryDirectory() as download_dir:
        download = ["apt-get", "download", "prometheus"]
        fetched = subprocess.run(download, cwd=download_dir, capture_output=True, timeout=300, check=False)
        if fetched.returncode != 0 and os.geteuid() == 0:
            # A fresh machine may have no package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, check=False)
            fetched = subprocess.run(
                download, cwd=download_dir, capture_output=True, timeout=300, check=False
            )
        debs = list(Path(download_dir).glob("prometheus_*.deb"))
        if fetched.returncode != 0 or not debs:
            return None
        PROMTOOL_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(PROMTOOL_CACHE)], check=True, timeout=120)
    return target if target.is_file() else None


@pytest.fixture(scope="session")
def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    extracted = _extract_from_debian_package()
    if extracted is None:
        pytest.skip("promtool not available: install Prometheus (Debian/Ubuntu: apt-get install prometheus)")
    return str(extracted)
