"""Render the kustomize overlays in k8s/ with a pinned kustomize, installed on first use.

kustomize comes from the Go module proxy (``go install``) into ``~/.cache/streamrec`` and is
reused from there; ``.ci/run`` installs it before the tests (``python tests/k8s_render.py``).
When it cannot be installed the tests that need it fail with the reason, never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
#: The newest kustomize that builds with this machine's Go (1.26) without a newer toolchain.
KUSTOMIZE_VERSION = "v5.8.1"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
INSTALL_TIMEOUT_S = 900


class KustomizeError(Exception):
    """kustomize could not be installed or could not render an overlay (one line)."""


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "streamrec" / f"kustomize-{KUSTOMIZE_VERSION}"


def kustomize() -> Path:
    """The pinned kustomize binary, installed with ``go install`` unless already cached."""
    binary = _cache_dir() / "kustomize"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise KustomizeError(
            f"kustomize {KUSTOMIZE_VERSION} is not in {binary.parent} and there is no `go` "
            "to install it with: install Go (1.21 or newer fetches the toolchain it needs)"
        )
    # GOTOOLCHAIN=auto: an older Go fetches the toolchain kustomize's go.mod asks for.
    env = {**os.environ, "GOBIN": str(binary.parent), "GOTOOLCHAIN": "auto", "GOFLAGS": ""}
    command = [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"]
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise KustomizeError(
            f"`{' '.join(command)}` did not finish in {INSTALL_TIMEOUT_S} s"
        ) from None
    if result.returncode != 0 or not binary.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise KustomizeError(f"`{' '.join(command)}` failed: {last}")
    return binary


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every document ``kustomize build k8s/overlays/<overlay>`` prints."""
    result = subprocess.run(
        [str(kustomize()), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise KustomizeError(f"kustomize build {overlay}: {result.stderr.strip()}")
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def only(documents: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    """The one document of ``kind``."""
    (document,) = [document for document in documents if document["kind"] == kind]
    return document


if __name__ == "__main__":
    try:
        print(f"kustomize {KUSTOMIZE_VERSION}: {kustomize()}")
    except KustomizeError as error:
        sys.exit(f"tests/k8s_render.py: {error}")
