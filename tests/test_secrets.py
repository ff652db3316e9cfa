"""Kafka credentials reach librdkafka from the config and the environment, and never appear in
logs, errors or the printed config: a whole job over the real broker with a password set, a
SASL handshake the broker refuses, and config errors about secret keys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kafka_job import ENTRY_POINT, ROOT, event, produce, write_config

from operators.config import ConfigError, config_from_mapping, load_config

PASSWORD = "pw-never-shown-7f3a"
KEY_PASSWORD = "ssl-key-pw-never-shown-91c2"
T0 = 1_700_000_000_000


def _streamrec(
    config: Path, *args: str, environ: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", ENTRY_POINT, "run", "-c", str(config), *args]
    env = {**os.environ, **environ}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _with_secrets(config: Path, **kafka: object) -> Path:
    data = yaml.safe_load(config.read_text())
    data["kafka"].update(kafka)
    config.write_text(yaml.safe_dump(data))
    return config


def test_a_job_with_credentials_set_logs_none_of_them(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """PLAINTEXT ignores the SASL password, so the whole job runs with it configured: the
    launcher, Bytewax and librdkafka's own logs stay clean."""
    events, out, dead = kafka_topic(), kafka_topic(), kafka_topic()
    produce(kafka_bootstrap, events, [event(f"u{n % 3}", f"i{n % 5}", T0 + n) for n in range(50)])
    config = write_config(tmp_path / "config.yaml", kafka_bootstrap, events, out, dead, tail=False)
    _with_secrets(config, sasl_username="streamrec", extra={"ssl.key.password": KEY_PASSWORD})
    environ = {"STREAMREC_KAFKA_SASL_PASSWORD": PASSWORD}
    assert load_config(config, environ).kafka.client_config()["sasl.password"] == PASSWORD
    result = _streamrec(config, "--no-recovery", "--metrics-port", "0", environ=environ)
    assert result.returncode == 0, result.stderr
    assert "ready" in result.stderr
    for secret in (PASSWORD, KEY_PASSWORD):
        assert secret not in result.stdout + result.stderr


def test_a_refused_sasl_handshake_is_one_line_without_the_password(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events = kafka_topic()
    config = write_config(
        tmp_path / "config.yaml", kafka_bootstrap, events, events, events, tail=False
    )
    environ = {
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAMREC_KAFKA_SASL_MECHANISM": "PLAIN",
        "STREAMREC_KAFKA_SASL_USERNAME": "streamrec",
        "STREAMREC_KAFKA_SASL_PASSWORD": PASSWORD,
    }
    result = _streamrec(config, "--no-recovery", "--metrics-port", "0", environ=environ)
    assert result.returncode == 2
    assert result.stderr.startswith(f"streamrec run: cannot reach Kafka at {kafka_bootstrap}")
    assert result.stderr.count("\n") == 1 and PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "kafka",
    [
        {"sasl_password": 1234567},
        {"extra": {"ssl.key.password": 1234567}},
        {"extra": {"sasl.oauthbearer.client.secret": [1234567]}},
    ],
)
def test_config_errors_and_the_printed_config_never_show_a_secret(kafka: dict) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"kafka": kafka})
    assert "1234567" not in str(caught.value) and "(a secret)" in str(caught.value)
    shown = {"sasl_password": PASSWORD, "extra": {"ssl.key.password": KEY_PASSWORD}}
    printed = repr(config_from_mapping({"kafka": shown}))
    assert PASSWORD not in printed and KEY_PASSWORD not in printed
