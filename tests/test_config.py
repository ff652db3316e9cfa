"""Loading the job configuration: defaults, errors that name the key, environment overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from operators.config import (
    Config,
    ConfigError,
    FileEndpoint,
    KafkaTopic,
    config_from_mapping,
    load_config,
)
from operators.engine_config import EngineConfig

DEPLOY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "config.yaml"


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, source="config.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_documented_file_equals_the_defaults() -> None:
    assert load_config(DEPLOY_CONFIG, environ={}) == Config()


def test_every_engine_field_is_documented_in_the_deploy_file() -> None:
    documented = yaml.safe_load(DEPLOY_CONFIG.read_text())["engine"]
    assert set(documented) == {spec.name for spec in dataclasses.fields(EngineConfig)}


def test_the_engine_section_is_built_by_field_name() -> None:
    changed = {}
    for name, value in dataclasses.asdict(EngineConfig()).items():
        if isinstance(value, bool):
            changed[name] = not value
        elif isinstance(value, int | float):
            changed[name] = value * 2
        elif isinstance(value, dict):
            changed[name] = {"view": 2.0}
        elif name == "ranker":
            changed[name] = "fixed"
        else:
            changed[name] = value + "-x"
    engine = config_from_mapping({"engine": changed}).engine
    assert dataclasses.asdict(engine) == changed


def test_a_file_names_only_what_it_changes() -> None:
    config = config_from_mapping(
        {"window": {"length_s": 30}, "input": {"file": {"path": "events.jsonl"}}}
    )
    assert config.window.length_s == 30.0
    assert config.window.allowed_lateness_s == Config().window.allowed_lateness_s
    assert config.input == FileEndpoint("events.jsonl")
    assert config.gate_settings().length_ms == 30_000


def test_unknown_keys_are_named_with_a_suggestion() -> None:
    assert (
        error_of({"window": {"lenght_s": 60}})
        == 'config.yaml: unknown key "window.lenght_s" (did you mean "length_s"?)'
    )
    assert error_of({"engine": {"neighbors": 4}}) == (
        'config.yaml: unknown key "engine.neighbors" (did you mean "neighbours"?)'
    )
    assert error_of({"input": {"kafka": {"topik": "x"}}}).endswith(
        'unknown key "input.kafka.topik" (did you mean "topic"?)'
    )
    assert "known keys: " in error_of({"zzzz": 1})


def test_invalid_values_name_the_key_and_what_is_expected() -> None:
    assert error_of({"window": {"length_s": "ten"}}) == (
        "config.yaml: \"window.length_s\" must be a number, got 'ten'"
    )
    assert "must be at least 0" in error_of({"window": {"length_s": -1}})
    assert '"engine.k" must be a whole number' in error_of({"engine": {"k": 2.5}})
    assert '"engine.k" must be a whole number, got True' in error_of({"engine": {"k": True}})
    assert '"engine.ranker" must be one of "river", "fixed"' in error_of(
        {"engine": {"ranker": "xgboost"}}
    )
    assert '"engine.type_weights.view" must be a number' in error_of(
        {"engine": {"type_weights": {"view": "high"}}}
    )
    assert '"kafka.brokers" must be a list' in error_of({"kafka": {"brokers": "a:9092"}})
    assert '"dedupe" must be a mapping' in error_of({"dedupe": [1]})
    assert '"input" must not be null' in error_of({"input": None})


def test_endpoints_name_exactly_one_kind() -> None:
    assert 'unknown key "input.s3" (use "kafka" or "file")' in error_of({"input": {"s3": {}}})
    assert "exactly one of" in error_of({"output": {"kafka": {"topic": "a"}, "file": {}}})
    assert '"input.file.path" is required' in error_of({"input": {"file": {}}})
    assert config_from_mapping({"output": None}).output is None
    assert config_from_mapping({"dead_letter": {"kafka": {"topic": "d"}}}).dead_letter == (
        KafkaTopic("d")
    )


def test_file_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("window:\n  length_s: [1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: invalid YAML at line \d+"):
        load_config(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_config(empty, environ={}) == Config()


def test_environment_overrides_brokers_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("kafka:\n  brokers: [file:9092]\n  sasl_username: me\n")
    environ = {
        "STREAMREC_KAFKA_BROKERS": "a:9092, b:9092",
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMREC_KAFKA_SASL_PASSWORD": "s3cret",
    }
    kafka = load_config(path, environ=environ).kafka
    assert kafka.brokers == ("a:9092", "b:9092")
    assert kafka.client_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "me",
        "sasl.password": "s3cret",
    }
    assert "s3cret" not in repr(kafka)
    with pytest.raises(ConfigError, match=r"\$STREAMREC_KAFKA_SECURITY_PROTOCOL must be one of"):
        load_config(path, environ={"STREAMREC_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_replay_uses_files_and_event_time_only() -> None:
    config = Config().for_replay(Path("e.jsonl"), Path("recs.jsonl"), None)
    assert config.input == FileEndpoint("e.jsonl")
    assert config.output == FileEndpoint("recs.jsonl")
    assert config.dead_letter is None
    assert config.window.close_after_idle_s is None
    assert config.state.user_idle_expire_s is None
    assert config.engine == Config().engine
