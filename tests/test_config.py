"""Loading the job configuration: defaults, errors that name the key, environment overrides."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pty
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import yaml

from dataflows import cli
from operators.config import (
    ENGINE_RANGES,
    Config,
    ConfigError,
    FileEndpoint,
    KafkaTopic,
    config_from_mapping,
    load_config,
)
from operators.config_reference import config_rows, reference_table
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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"engine": {"shards": 0}}, 'unknown key "engine.shards" (known keys: history_cap, '),
        ({"engine": {"link_half_life_ms": 0}}, '"engine.link_half_life_ms" must be above 0, got 0'),
        ({"engine": {"learning_rate": -0.1}}, '"engine.learning_rate" must be above 0, got -0.1'),
        ({"engine": {"k": 0}}, '"engine.k" must be at least 1, got 0'),
        ({"engine": {"sweep_every": 0}}, '"engine.sweep_every" must be at least 1, got 0'),
        ({"engine": {"rating_spread": 0.0}}, '"engine.rating_spread" must be above 0, got 0.0'),
        ({"engine": {"dimensions": -4}}, '"engine.dimensions" must be at least 1, got -4'),
        (
            {"engine": {"type_weights": {"view": -1}}},
            '"engine.type_weights.view" must be at least 0, got -1',
        ),
        (
            {"engine": {"k": 20, "candidates": 10}},
            '"engine.k" must be at most "engine.candidates" (10), got 20',
        ),
        (
            {"engine": {"trend_top": 300}},
            '"engine.trend_top" must be at most "engine.trending" (200), got 300',
        ),
        ({"window": {"close_after_idle_s": 0}}, '"window.close_after_idle_s" must be above 0'),
        ({"recovery": {"snapshot_interval_s": 0}}, '"recovery.snapshot_interval_s" must be at'),
        ({"limits": {"max_message_bytes": -5}}, '"limits.max_message_bytes" must be at least 1'),
        ({"kafka": {"brokers": []}}, '"kafka.brokers" must list at least one value'),
        (
            {"output": {"kafka": {"topic": "my topic"}}},
            '"output.kafka.topic" must be a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -), '
            "got 'my topic'",
        ),
        ({"input": {"kafka": {"topic": ""}}}, '"input.kafka.topic" must be a Kafka topic name'),
        ({"input": {"kafka": {"batch_size": "many"}}}, "must be a whole number, got 'many'"),
        ({"quality": {"window_targets": 0}}, '"quality.window_targets" must be at least 1, got 0'),
        (
            {"quality": {"every_events": 1000}},
            '"quality.every_events" needs "quality.output" too (or neither: no records)',
        ),
        (
            {"quality": {"output": {"file": {"path": "q.jsonl"}}}},
            '"quality.output" needs "quality.every_events" too',
        ),
    ],
)
def test_values_out_of_range_are_one_line_naming_the_key_and_what_is_allowed(
    data: dict, message: str
) -> None:
    assert message in error_of(data)


def test_every_numeric_engine_key_has_a_range() -> None:
    numeric = {
        spec.name
        for spec in dataclasses.fields(EngineConfig)
        if isinstance(getattr(EngineConfig(), spec.name), int | float | dict)
        and not isinstance(getattr(EngineConfig(), spec.name), bool)
    }
    assert numeric == set(ENGINE_RANGES)
    # The defaults are inside their own ranges.
    config_from_mapping({"engine": dataclasses.asdict(EngineConfig())})


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        ("run", "engine:\n  shards: 0\n", 'unknown key "engine.shards"'),
        ("run", "engine:\n  pop_short_half_life_ms: 0\n", "must be above 0"),
        ("replay", "engine:\n  learning_rate: -1\n", '"engine.learning_rate" must be above 0'),
        ("evaluate", "engine: {k: 50, candidates: 20}\n", '"engine.k" must be at most'),
        ("pretrain", "window:\n  length_s: -1\n", '"window.length_s" must be at least 0'),
    ],
)
def test_bad_configs_stop_every_command_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text("", encoding="utf-8")
    argv = {
        "run": ["run", "-c", str(config)],
        "replay": ["replay", str(events), "-c", str(config)],
        "evaluate": ["evaluate", str(events), "-c", str(config)],
        "pretrain": ["pretrain", str(events), "--out", str(tmp_path / "warm"), "-c", str(config)],
    }[command]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"streamrec {command}: {config}: ")
    assert message in error


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


def test_every_command_shows_an_example_in_its_help() -> None:
    parser = cli.build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    assert set(commands.choices) >= {
        "run",
        "replay",
        "evaluate",
        "generate",
        "import",
        "pretrain",
        "bench",
        "tail",
    }
    for name, sub in commands.choices.items():
        text = sub.format_help()
        assert f"example:\n  streamrec {name} " in text, text


def _stderr_on_a_terminal(*argv: str) -> str:
    """What ``streamrec ARGV`` writes to stderr when stderr is a terminal."""
    main, terminal = pty.openpty()
    termios.tcsetwinsize(terminal, (24, 120))  # a new pty is 0 columns wide: no room for a bar
    entry = "import sys; from dataflows.cli import main; sys.exit(main(sys.argv[1:]))"
    with subprocess.Popen([sys.executable, "-c", entry, *argv], stderr=terminal) as child:
        os.close(terminal)
        chunks = []
        with contextlib.suppress(OSError):  # EIO once the child closed its end
            while chunk := os.read(main, 4096):
                chunks.append(chunk)
        assert child.wait(timeout=60) == 0
    os.close(main)
    return b"".join(chunks).decode()


def test_long_commands_draw_a_progress_bar_on_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "events.jsonl")
    shown = _stderr_on_a_terminal("generate", "--events", "300000", out)
    assert "/300000 [" in shown and "events/s" in shown and "<00:" in shown, shown
    assert "\r" in shown
    quiet = _stderr_on_a_terminal("generate", "--events", "300000", "--quiet", out)
    assert quiet.strip().startswith("wrote 300000 events"), quiet
    assert cli.main(["generate", "--events", "3000", out]) == 0
    assert capsys.readouterr().err.startswith("wrote 3000 events"), "no bar in a pipe"


def test_the_readme_config_reference_is_what_the_config_renders() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = reference_table()
    assert table in readme, "README's table is stale: paste python -m operators.config_reference"
    keys = {row.key for row in config_rows()}
    assert {"kafka.group_id", "quality.window_targets", "engine.k", "window.length_s"} <= keys
    unexplained = [line for line in table.splitlines() if line.endswith("|  |")]
    assert unexplained == [], "keys without a comment in deploy/config.yaml"
