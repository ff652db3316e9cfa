"""The job's configuration: one YAML file loaded into a tree of frozen dataclasses.

Every key has a default (``deploy/config.yaml`` documents them all and equals the defaults), so a
file only names what it changes. Sections are built from dataclass fields by name, the
``engine:`` section included, so a new field of :class:`~operators.engine_config.EngineConfig`
is a new config key with no change here. Unknown keys, values of the wrong type and values out
of range are refused when the job starts, with a :class:`ConfigError` that names the key and
what is allowed. The ranges of the ``engine`` section live here (:data:`ENGINE_RANGES`), beside
the others, and every numeric engine field must have one.

``input``, ``output`` and ``dead_letter`` name exactly one kind of endpoint (``kafka`` or
``file``); ``output`` and ``dead_letter`` may also be null (counted, not written). The Kafka
connection (brokers, SASL) is the top-level ``kafka`` section, shared by all three; the
environment overrides it so secrets need not be in the file: ``STREAMREC_KAFKA_BROKERS``
(comma-separated), ``STREAMREC_KAFKA_SECURITY_PROTOCOL``, ``STREAMREC_KAFKA_SASL_MECHANISM``,
``STREAMREC_KAFKA_SASL_USERNAME`` and ``STREAMREC_KAFKA_SASL_PASSWORD``. The key of
``privacy.pseudonymise_users`` comes from ``STREAMREC_USER_KEY`` only (see
:mod:`operators.privacy`): a file that names it is refused, and so is a config that turns
pseudonymisation on while the variable is unset.

>>> config = config_from_mapping({"window": {"length_s": 60}, "engine": {"k": 5}})
>>> config.window.length_s, config.window.allowed_lateness_s, config.engine.k
(60.0, 3600.0, 5)
>>> try:
...     config_from_mapping({"window": {"lenght_s": 60}}, source="config.yaml")
... except ConfigError as error:
...     print(error)
config.yaml: unknown key "window.lenght_s" (did you mean "length_s"?)
>>> config_from_mapping({"input": {"file": {"path": "e.jsonl"}}}).input
FileEndpoint(path='e.jsonl', batch_size=1000)
>>> try:
...     config_from_mapping({"engine": {"link_half_life_ms": 0}}, source="config.yaml")
... except ConfigError as error:
...     print(error)
config.yaml: "engine.link_half_life_ms" must be above 0, got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from operators.engine_config import EngineConfig
from operators.privacy import USER_KEY_ENV, Pseudonymiser
from operators.windows import GateSettings

_DAY_S = 86_400.0
_ENV_PREFIX = "STREAMREC_KAFKA_"
#: The Kafka fields the environment overrides (where and as whom to connect).
_ENVIRONMENT_FIELDS = (
    "brokers",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
)


class ConfigError(Exception):
    """A configuration problem, described in one line that names the key and the fix."""


#: Kafka's own rule for topic names.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class Range:
    """The allowed values of a number (of each item of a list or mapping): at least ``minimum``,
    or strictly above ``above``."""

    minimum: float | None = None
    above: float | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value``, or None."""
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}"
        if self.above is not None and value <= self.above:
            return f"must be above {self.above:g}"
        return None


#: Field metadata keys: a :class:`Range`; a Kafka topic name; a list that must not be empty;
#: the environment variable that alone may set the field (never a file).
_RANGE = "range"
_TOPIC = "topic"
_NON_EMPTY = "non_empty"
_ENVIRONMENT_ONLY = "environment_only"


def _at_least(minimum: float) -> dict[str, Range]:
    return {_RANGE: Range(minimum=minimum)}


def _above(bound: float) -> dict[str, Range]:
    return {_RANGE: Range(above=bound)}


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach the Kafka cluster (``STREAMREC_KAFKA_<FIELD>`` overrides each of the
    fields in :data:`_ENVIRONMENT_FIELDS`)."""

    brokers: tuple[str, ...] = field(default=("localhost:9092",), metadata={_NON_EMPTY: True})
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    #: Any other librdkafka properties, passed through as they are (left out of the repr: they
    #: may hold ``ssl.key.password`` and the like).
    extra: dict[str, str] = field(default_factory=dict, repr=False)
    #: ``streamrec run`` creates the topics that are missing (the output topic compacted)
    #: instead of stopping with the command that creates them.
    create_topics: bool = False
    #: Partitions of the topics ``create_topics`` creates.
    topic_partitions: int = field(default=3, metadata=_at_least(1))
    #: Consumer group the live job commits the input offsets it has processed to, at the end
    #: of every epoch, so Kafka's own tools show its lag (null: commit nothing). The job
    #: resumes from its recovery store, never from these offsets.
    group_id: str | None = "streamrec"

    def client_config(self) -> dict[str, str]:
        """librdkafka properties for consumers and producers (brokers excluded)."""
        properties = {"security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
        }
        properties.update({key: value for key, value in optional.items() if value is not None})
        properties.update(self.extra)
        return properties


@dataclass(frozen=True)
class KafkaInput:
    """Consume one topic (every partition). Offsets live in the recovery snapshots."""

    KIND: ClassVar[str] = "kafka"
    topic: str = field(default="streamrec.events", metadata={_TOPIC: True})
    #: Where a job without recovery state starts reading.
    starting_offset: Literal["earliest", "latest"] = "earliest"
    #: Keep waiting for new messages at the end of the topic (false: stop there, for tests).
    tail: bool = True
    batch_size: int = field(default=1000, metadata=_at_least(1))


@dataclass(frozen=True)
class KafkaTopic:
    """Produce to one topic."""

    KIND: ClassVar[str] = "kafka"
    topic: str = field(metadata={_TOPIC: True})


@dataclass(frozen=True)
class FileEndpoint:
    """A JSON Lines file (for input also a directory of files, read in name order)."""

    KIND: ClassVar[str] = "file"
    path: str
    #: Lines read per batch (input only); each worker keeps its own users' lines of a batch.
    batch_size: int = field(default=1000, metadata=_at_least(1))


@dataclass(frozen=True)
class WindowConfig:
    """Per-user event-time windows in front of the user step (see ``operators.windows``)."""

    length_s: float = field(default=1.0, metadata=_at_least(0))
    allowed_lateness_s: float = field(default=3600.0, metadata=_at_least(0))
    close_after_idle_s: float | None = field(default=60.0, metadata=_above(0))
    refresh_idle_s: float | None = field(default=_DAY_S, metadata=_above(0))


@dataclass(frozen=True)
class DedupeConfig:
    #: Recent event ids remembered per user; a duplicate further back is not caught. Each id is
    #: in every snapshot of the user, so this is the gate's memory and snapshot size.
    ids_per_user: int = field(default=100, metadata=_at_least(0))


@dataclass(frozen=True)
class StateConfig:
    """Processing-time expiry of idle users in the live job (null keeps them). Items expire in
    event time inside the model replicas (``engine.item_idle_ms``)."""

    user_idle_expire_s: float | None = field(default=365 * _DAY_S, metadata=_above(0))


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = field(default=16 * 1024, metadata=_at_least(1))


@dataclass(frozen=True)
class RecoveryConfig:
    """Bytewax recovery: where the partitions live and how often state is snapshotted."""

    dir: str | None = None
    # Whole seconds: that is what ``python -m bytewax.run -s/-b`` accept.
    snapshot_interval_s: int = field(default=10, metadata=_at_least(1))
    backup_interval_s: int = field(default=0, metadata=_at_least(0))


@dataclass(frozen=True)
class PrivacyConfig:
    """User ids in the job (see ``operators.privacy``)."""

    #: Replace every user id by HMAC-SHA256 with the key in ``$STREAMREC_USER_KEY``.
    pseudonymise_users: bool = False
    #: Live only: how long after a user's last event the timestamp of their forget_user is kept
    #: to refuse delayed older events (``operators.windows``); null keeps it until they expire.
    forget_guard_s: float | None = field(default=3600.0, metadata=_above(0))
    user_key: str | None = field(
        default=None, repr=False, metadata={_ENVIRONMENT_ONLY: USER_KEY_ENV}
    )


@dataclass(frozen=True)
class QualityConfig:
    """The online quality of the lists served (``operators.quality``): Prometheus gauges always,
    and a stream of quality records when ``every_events`` and ``output`` are set."""

    #: Rolling HR@k and NDCG@k over this many of the latest targets (and coverage over this
    #: many lists), per replica.
    window_targets: int = field(default=1000, metadata=_at_least(1))
    #: Each replica writes one quality record every this many events (null: none).
    every_events: int | None = field(default=None, metadata=_at_least(1))
    #: Where quality records go: ``kafka`` (a topic) or ``file`` (JSON Lines).
    output: KafkaTopic | FileEndpoint | None = None


@dataclass(frozen=True)
class Config:
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    input: KafkaInput | FileEndpoint = field(default_factory=KafkaInput)
    output: KafkaTopic | FileEndpoint | None = KafkaTopic("streamrec.recommendations")
    dead_letter: KafkaTopic | FileEndpoint | None = KafkaTopic("streamrec.dead-letter")
    window: WindowConfig = field(default_factory=WindowConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    state: StateConfig = field(default_factory=StateConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def pseudonymiser(self) -> Pseudonymiser | None:
        """What replaces user ids, or None when they are kept; a :class:`ConfigError` when
        pseudonymisation is on without a key."""
        if not self.privacy.pseudonymise_users:
            return None
        if not self.privacy.user_key:
            raise ConfigError(
                f"privacy.pseudonymise_users is true but ${USER_KEY_ENV} is not set; set it to "
                "the secret key (from a Kubernetes Secret, never in the config file)"
            )
        return Pseudonymiser(self.privacy.user_key.encode("utf-8"))

    def gate_settings(self) -> GateSettings:
        return GateSettings(
            length_ms=round(self.window.length_s * 1000),
            allowed_lateness_ms=round(self.window.allowed_lateness_s * 1000),
            ids_per_user=self.dedupe.ids_per_user,
        )

    def known_types(self) -> frozenset[str]:
        """The event types the engine weighs (``forget_user`` is always known)."""
        return frozenset(self.engine.type_weights)

    def for_replay(self, events: Path, out: Path | None, dead_letter: Path | None) -> Config:
        """The same job over files, with event-time semantics only (reproducible)."""
        return dataclasses.replace(
            self,
            input=FileEndpoint(str(events)),
            output=None if out is None else FileEndpoint(str(out)),
            dead_letter=None if dead_letter is None else FileEndpoint(str(dead_letter)),
            window=dataclasses.replace(self.window, close_after_idle_s=None, refresh_idle_s=None),
            state=StateConfig(user_idle_expire_s=None),
            privacy=dataclasses.replace(self.privacy, forget_guard_s=None),
        )


_POSITIVE = Range(above=0)
_COUNT = Range(minimum=1)
_NON_NEGATIVE = Range(minimum=0)

#: The allowed values of every numeric ``engine`` key (of each value of ``type_weights``).
#: Half-lives and spreads divide, so they must be above 0; caps, sizes and refresh periods
#: count something, so they are at least 1.
ENGINE_RANGES: dict[str, Range] = {
    "history_cap": _COUNT,
    "seen_cap": _NON_NEGATIVE,
    "link_recent": _COUNT,
    "query_recent": _COUNT,
    "neighbours": _COUNT,
    "reply_neighbours": _COUNT,
    "reply_refresh": _COUNT,
    "link_half_life_ms": _POSITIVE,
    "link_gap_half_life_ms": _POSITIVE,
    "pop_short_half_life_ms": _POSITIVE,
    "pop_long_half_life_ms": _POSITIVE,
    "trending": _COUNT,
    "trend_top": _NON_NEGATIVE,
    "trend_refresh": _COUNT,
    "similar": _NON_NEGATIVE,
    "similar_pool": _COUNT,
    "category_top": _NON_NEGATIVE,
    "recency_half_life_ms": _POSITIVE,
    "recency_half_life_items": _POSITIVE,
    "dimensions": _COUNT,
    "embedding_rate": _POSITIVE,
    "negatives": _COUNT,
    "seed": _NON_NEGATIVE,
    "candidates": _COUNT,
    "k": _COUNT,
    "learning_rate": _POSITIVE,
    "open_lists": _COUNT,
    "item_idle_ms": _POSITIVE,
    "sweep_every": _COUNT,
    "rating_spread": _POSITIVE,
    "type_weights": _NON_NEGATIVE,
}

#: Engine keys that must not exceed another: (key, its bound).
ENGINE_BOUNDS: tuple[tuple[str, str], ...] = (("k", "candidates"), ("trend_top", "trending"))


def _check_engine(engine: EngineConfig, source: str) -> None:
    for name, bound in ENGINE_BOUNDS:
        value, limit = getattr(engine, name), getattr(engine, bound)
        if value > limit:
            raise ConfigError(
                f'{source}: "engine.{name}" must be at most "engine.{bound}" ({limit}), got {value}'
            )


def _check_quality(quality: QualityConfig, source: str) -> None:
    if (quality.every_events is None) != (quality.output is None):
        given, missing = ("every_events", "output")
        if quality.every_events is None:
            given, missing = missing, given
        raise ConfigError(
            f'{source}: "quality.{given}" needs "quality.{missing}" too (or neither: no records)'
        )


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (the defaults when None) and apply the environment's Kafka overrides."""
    data: Any = {}
    source = "defaults" if path is None else str(path)
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{source}: cannot read the config file ({error.strerror})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    config = config_from_mapping({} if data is None else data, source)
    config = _with_environment(config, os.environ if environ is None else environ)
    config.pseudonymiser()
    return config


def config_from_mapping(data: Any, source: str = "config") -> Config:
    """Build a :class:`Config` from decoded YAML, refusing unknown keys, wrong types and values
    out of range."""
    config = _build(Config, data, source, "")
    _check_engine(config.engine, source)
    _check_quality(config.quality, source)
    return config


def _with_environment(config: Config, environ: Mapping[str, str]) -> Config:
    changes: dict[str, Any] = {}
    hints = typing.get_type_hints(KafkaConnection)
    for spec in dataclasses.fields(KafkaConnection):
        variable = _ENV_PREFIX + spec.name.upper()
        if spec.name not in _ENVIRONMENT_FIELDS or variable not in environ:
            continue
        raw: Any = environ[variable]
        if spec.name == "brokers":
            raw = [broker.strip() for broker in raw.split(",") if broker.strip()]
        changes[spec.name] = _convert(hints[spec.name], raw, f"${variable}", "", spec.metadata)
    if changes:
        config = dataclasses.replace(config, kafka=dataclasses.replace(config.kafka, **changes))
    if config.privacy.pseudonymise_users and environ.get(USER_KEY_ENV):
        privacy = dataclasses.replace(config.privacy, user_key=environ[USER_KEY_ENV])
        config = dataclasses.replace(config, privacy=privacy)
    return config


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _build(cls: type, data: Any, source: str, path: str) -> Any:
    if not isinstance(data, Mapping):
        where = f'"{path}"' if path else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping of keys, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    specs = {spec.name: spec for spec in dataclasses.fields(cls) if spec.init}
    ranges = ENGINE_RANGES if cls is EngineConfig else {}
    values: dict[str, Any] = {}
    for name, raw in data.items():
        key = _key(path, str(name))
        if name not in specs:
            raise ConfigError(f'{source}: unknown key "{key}" ({_suggest(str(name), specs)})')
        if _ENVIRONMENT_ONLY in specs[name].metadata:
            variable = specs[name].metadata[_ENVIRONMENT_ONLY]
            raise ConfigError(f'{source}: "{key}" is never read from a file; set ${variable}')
        metadata = {_RANGE: ranges[name]} if name in ranges else specs[name].metadata
        values[name] = _convert(hints[name], raw, source, key, metadata)
    for name, spec in specs.items():
        no_default = spec.default is dataclasses.MISSING
        if name not in values and no_default and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f'{source}: "{_key(path, name)}" is required')
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f'{source}: "{path or cls.__name__}": {error}') from None


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f'did you mean "{close[0]}"?'
    return "known keys: " + ", ".join(known)


#: Keys whose values are never quoted in an error (SASL and SSL passwords, tokens, keys).
_SECRET_KEY = re.compile(r"password|secret|token|key$", re.IGNORECASE)


def _show(raw: Any, key: str = "") -> str:
    if _SECRET_KEY.search(key):
        return "a value not shown (a secret)"
    if raw is None:
        return "null"
    if isinstance(raw, Mapping):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    return repr(raw)


def _convert(kind: Any, raw: Any, source: str, key: str, metadata: Mapping[str, Any]) -> Any:
    """Check ``raw`` against the field type ``kind`` and return the field value."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    label = f'"{key}"' if key else source
    prefix = f"{source}: " if key else ""
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in args if arg is not type(None)]
        if raw is None:
            if len(options) < len(args):
                return None
            raise ConfigError(f"{prefix}{label} must not be null")
        if all(dataclasses.is_dataclass(option) for option in options):
            return _build_variant(options, raw, source, key)
        (kind,) = options
        return _convert(kind, raw, source, key, metadata)
    if origin is Literal:
        if raw not in args:
            choices = ", ".join(f'"{arg}"' if isinstance(arg, str) else str(arg) for arg in args)
            raise ConfigError(f"{prefix}{label} must be one of {choices}, got {_show(raw, key)}")
        return raw
    if dataclasses.is_dataclass(kind):
        return _build(kind, raw, source, key)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(raw, list):
            raise ConfigError(f"{prefix}{label} must be a list, got {_show(raw, key)}")
        if not raw and metadata.get(_NON_EMPTY):
            raise ConfigError(f"{prefix}{label} must list at least one value")
        return tuple(_convert(args[0], item, source, key, {}) for item in raw)
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{prefix}{label} must be a mapping, got {_show(raw, key)}")
        # A mapping's range applies to each of its values.
        return {
            _convert(args[0], name, source, key, {}): _convert(
                args[1], value, source, f"{key}.{name}", metadata
            )
            for name, value in raw.items()
        }
    value = _scalar(kind, raw)
    if value is None:
        expected = {bool: "true or false", int: "a whole number", float: "a number"}
        raise ConfigError(
            f"{prefix}{label} must be {expected.get(kind, 'a string')}, got {_show(raw, key)}"
        )
    allowed: Range | None = metadata.get(_RANGE)
    problem = None if allowed is None else allowed.problem(value)
    if problem is not None:
        raise ConfigError(f"{prefix}{label} {problem}, got {_show(raw, key)}")
    if metadata.get(_TOPIC) and not _TOPIC_NAME.match(value):
        raise ConfigError(
            f"{prefix}{label} must be a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -), "
            f"got {_show(raw, key)}"
        )
    return value


def _scalar(kind: Any, raw: Any) -> Any:
    """``raw`` as a ``kind`` value, or None when it is not one (booleans are not numbers)."""
    if kind is bool:
        return raw if isinstance(raw, bool) else None
    if isinstance(raw, bool):
        return None
    if kind is int:
        return raw if isinstance(raw, int) else None
    if kind is float:
        return float(raw) if isinstance(raw, int | float) else None
    if kind is str:
        return raw if isinstance(raw, str) else None
    raise TypeError(f"config fields of type {kind!r} are not supported")


def _build_variant(options: list[Any], raw: Any, source: str, key: str) -> Any:
    kinds = {option.KIND: option for option in options}
    names = " or ".join(f'"{kind}"' for kind in kinds)
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise ConfigError(f'{source}: "{key}" must hold exactly one of {names}')
    ((kind, body),) = raw.items()
    if kind not in kinds:
        raise ConfigError(f'{source}: unknown key "{_key(key, str(kind))}" (use {names})')
    return _build(kinds[kind], {} if body is None else body, source, _key(key, str(kind)))
