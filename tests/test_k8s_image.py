"""deploy/Dockerfile, read as text: no Docker daemon is needed (nor available on CI).

What is checked: two stages on one base pinned to a Python 3.11 patch release, dependencies
installed from wheels under deploy/constraints.txt, which pins the whole runtime closure of
pyproject.toml; a non-root numeric user that the pods run as; the entry point the StatefulSet's
args go to; and that the ignore file sends every file the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import json
import re
from importlib.metadata import distribution

from k8s_render import OVERLAYS, ROOT, only, render
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TEXT = DOCKERFILE.read_text(encoding="utf-8")
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"


def _instructions(name: str) -> list[str]:
    return re.findall(rf"^{name} (.+)$", TEXT, re.MULTILINE)


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_two_stages_on_one_pinned_base() -> None:
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", TEXT, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", default), default
    stages = _instructions("FROM")
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert "COPY --from=build /opt/streamrec /opt/streamrec" in TEXT


def test_dependencies_are_pinned_wheels_and_the_pins_cover_the_runtime_closure() -> None:
    (install,) = [line for line in _instructions("RUN") if "pip install" in line]
    assert "--only-binary=:all:" in install
    assert "-c deploy/constraints.txt" in install
    pins = _pins()
    missing, unsatisfied = [], []
    pending, seen = ["streamrec"], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = canonicalize_name(requirement.name)
            if key not in pins:
                missing.append(key)
            elif not requirement.specifier.contains(pins[key], prereleases=True):
                unsatisfied.append(f"{key}=={pins[key]} ({requirement})")
            pending.append(key)
    assert not missing, f"deploy/constraints.txt does not pin {sorted(set(missing))}"
    assert not unsatisfied, f"pins that a requirement refuses: {unsatisfied}"


def test_the_image_runs_streamrec_as_the_non_root_user_the_pods_run_as() -> None:
    (user,) = _instructions("USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid > 0 and gid > 0
    (entry,) = _instructions("ENTRYPOINT")
    assert json.loads(entry) == ["streamrec"]
    (exposed,) = _instructions("EXPOSE")
    for overlay in OVERLAYS:
        pod = only(render(overlay), "StatefulSet")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        security = pod["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (
            uid,
            gid,
            gid,
        )
        assert "command" not in container, "the args must go to the image's entry point"
        assert container["args"][0] == "run"
        ports = {port["containerPort"] for port in container["ports"]}
        assert {int(port) for port in exposed.split()} == ports


def test_the_ignore_file_sends_every_file_the_dockerfile_copies() -> None:
    """BuildKit reads deploy/Dockerfile.dockerignore for -f deploy/Dockerfile."""
    rules = [
        line
        for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        included = True
        for rule in rules:
            negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                included = negated
        return included

    sources = []
    for line in _instructions("COPY"):
        if not line.startswith("--from"):
            sources += line.split()[:-1]
    assert sources
    for source in sources:
        for path in [ROOT / source, *(ROOT / source).rglob("*.py")]:
            relative = path.relative_to(ROOT).as_posix()
            assert path.exists() and sent(relative), relative
    assert not sent("tests/conftest.py") and not sent(".venv/bin/python")
