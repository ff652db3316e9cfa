r"""The reference of every config key, rendered from the validated config so it cannot drift.

Keys, defaults and allowed values come from the dataclasses of :mod:`operators.config` (the
same types, ranges and choices the loader enforces); what each key means comes from the comment
beside it in ``deploy/config.yaml``, the documented file a test holds equal to the defaults.
The README's "Configuration reference" table is :func:`reference_table`; a test keeps them
equal (``python -m operators.config_reference`` prints it).

>>> comments = yaml_comments("window:\n  length_s: 1   # tumbling\n                 # window\n")
>>> comments
{'window.length_s': 'tumbling window'}
>>> rows = {row.key: row for row in config_rows()}
>>> rows["window.length_s"].default, rows["window.length_s"].allowed
('1.0', 'a number, at least 0')
>>> rows["engine.ranker"].allowed, rows["output.file.path"].default
('"river" or "fixed"', '(required)')
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from operators.config import (
    _ENVIRONMENT_ONLY,
    _NON_EMPTY,
    _RANGE,
    _TOPIC,
    ENGINE_RANGES,
    Config,
    Range,
)
from operators.engine_config import EngineConfig

DEPLOY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "config.yaml"
_LINE = re.compile(r"^(?P<indent> *)(?P<key>[a-z_]+):[^#]*(?:#\s*(?P<comment>.*))?$")
_CONTINUED = re.compile(r"^ +#\s*(?P<comment>.*)$")
_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
#: The meaning of an endpoint's keys, for the kinds ``deploy/config.yaml`` does not show.
_ENDPOINT_MEANINGS = {
    "kafka.topic": "the topic",
    "file.path": "a JSON Lines file (.gz compresses; input: also a directory, read in name order)",
    "file.batch_size": "lines read per batch (input only)",
}


@dataclass(frozen=True)
class Row:
    key: str
    default: str
    allowed: str


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment beside it (and on the indented comment lines below it)."""
    comments: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    last = ""
    for line in text.splitlines():
        continued = _CONTINUED.match(line)
        if continued and last:
            comments[last] = f"{comments.get(last, '')} {continued['comment']}".strip()
            continue
        match = _LINE.match(line)
        if match is None:
            last = ""
            continue
        indent = len(match["indent"])
        path = [(depth, name) for depth, name in path if depth < indent]
        path.append((indent, match["key"]))
        last = ".".join(name for _, name in path)
        if match["comment"]:
            comments[last] = match["comment"].strip()
    return comments


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{name}: {weight}" for name, weight in value.items()) or "{}"
    return str(value)


def _allowed(kind: Any, allowed: Range | None) -> str:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        (option,) = [arg for arg in args if arg is not type(None)]
        return f"{_allowed(option, allowed)}, or null"
    if origin is Literal:
        return " or ".join(f'"{arg}"' for arg in args)
    if origin is tuple:
        return f"a list of {_allowed(args[0], None).removeprefix('a ')}s"
    if origin is dict:
        return f"a mapping to {_allowed(args[1], allowed).removeprefix('a ')}"
    text = _KINDS[kind]
    if allowed is not None and allowed.minimum is not None:
        text += f", at least {allowed.minimum:g}"
    if allowed is not None and allowed.above is not None:
        text += f", above {allowed.above:g}"
    return text


def config_rows(cls: type = Config, prefix: str = "", default: Any = None) -> Iterator[Row]:
    """One row per leaf key, in the order of the dataclasses (an endpoint: each of its kinds)."""
    hints = typing.get_type_hints(cls)
    ranges = ENGINE_RANGES if cls is EngineConfig else {}
    instance = default if isinstance(default, cls) else None
    for spec in dataclasses.fields(cls):
        if spec.metadata.get(_ENVIRONMENT_ONLY):
            continue  # not a key of the file: the environment variable is the only way in
        key = f"{prefix}{spec.name}"
        kind = hints[spec.name]
        if instance is not None:
            value = getattr(instance, spec.name)
        elif spec.default is not dataclasses.MISSING:
            value = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            value = spec.default_factory()
        else:
            value = dataclasses.MISSING
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        variants = [option for option in options if dataclasses.is_dataclass(option)]
        if dataclasses.is_dataclass(kind):
            yield from config_rows(kind, f"{key}.", value)  # type: ignore[arg-type]
        elif variants:
            for variant in variants:
                yield from config_rows(variant, f"{key}.{variant.KIND}.", value)
        else:
            shown = "(required)" if value is dataclasses.MISSING else _show(value)
            allowed = _allowed(kind, ranges.get(spec.name) or spec.metadata.get(_RANGE))
            if spec.metadata.get(_TOPIC):
                allowed = "a Kafka topic name (A-Z a-z 0-9 . _ -)"
            if spec.metadata.get(_NON_EMPTY):
                allowed += " (at least one)"
            yield Row(key, shown, allowed)


def reference_table(comments: dict[str, str] | None = None) -> str:
    """The Markdown table of every key: default, allowed values, meaning."""
    if comments is None:
        comments = yaml_comments(DEPLOY_CONFIG.read_text(encoding="utf-8"))
    lines = ["| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for row in config_rows():
        variant = ".".join(row.key.split(".")[-2:])
        meaning = comments.get(row.key) or _ENDPOINT_MEANINGS.get(variant, "")
        meaning = meaning.replace("|", "\\|")
        lines.append(f"| `{row.key}` | `{row.default}` | {row.allowed} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_table())
