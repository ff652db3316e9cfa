"""A throwaway single-node Apache Kafka broker built from Maven Central jars.

The broker is the real ``kafka.Kafka`` server in KRaft mode (one process that is both broker and
controller), resolved with ``mvn`` into a cache outside the repository, so tests and people talk
to genuine Kafka without Docker or a downloaded tarball::

    python deploy/kafka/local_kafka.py download   # resolve the jars into the cache
    python deploy/kafka/local_kafka.py start      # 127.0.0.1:9092 in the background
    python deploy/kafka/local_kafka.py status
    python deploy/kafka/local_kafka.py topic events --partitions 3
    python deploy/kafka/local_kafka.py stop

The cache is ``$STREAMREC_KAFKA_CACHE`` (default ``~/.cache/streamrec``); the first start
downloads into it, later starts reuse it. Requests to the broker go through confluent-kafka's
``AdminClient`` (a dependency of streamrec). Tests use the module directly, including
:meth:`LocalKafka.halt` and :meth:`LocalKafka.resume` to take the broker away and bring it back
on the same port with its data:

>>> settings = render_server_properties(broker_port=19092, controller_port=19093, data_dir="/d")
>>> "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in settings
True
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

KAFKA_VERSION = "4.3.1"
SCALA_VERSION = "2.13"
# Kafka logs through slf4j 1.7; log4j-slf4j-impl is the log4j2 binding for that API line.
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

CACHE_ENV = "STREAMREC_KAFKA_CACHE"
HEAP = "-Xmx512m"
DEFAULT_START_TIMEOUT_S = 90.0
DEFAULT_STOP_TIMEOUT_S = 30.0
NODE_ID = 1
PORT_ATTEMPTS = 3

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamrec.local</groupId>
  <artifactId>local-kafka</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""

# Everything a person watching the broker would want, on the process's stdout (the log file),
# so JVM-level failures and Kafka's own messages end up in one place.
_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
"""


class LocalKafkaError(Exception):
    """The broker could not be downloaded, started or reached; the message says why."""


class PortInUseError(LocalKafkaError):
    """Another process took a port between choosing it and the broker binding it."""


def cache_root() -> Path:
    """Where jars and Maven's local repository live (``$STREAMREC_KAFKA_CACHE`` overrides)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "streamrec"


def libs_dir(root: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    return (root or cache_root()) / f"kafka-{version}" / "libs"


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise LocalKafkaError(f"`{tool}` is not on PATH; the local Kafka needs Java 17+ and Maven")
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize downloads between processes that share a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_libs(root: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's runtime jars with Maven once; later calls return the cached dir."""
    root = root or cache_root()
    target = libs_dir(root, version)
    if target.is_dir():
        return target
    mvn = _require("mvn")
    with _locked(root / f"kafka-{version}.lock"):
        if target.is_dir():  # another process finished the download while we waited
            return target
        with tempfile.TemporaryDirectory(prefix="resolve-", dir=root) as scratch:
            pom = Path(scratch) / "pom.xml"
            pom.write_text(
                _POM.format(
                    kafka=version,
                    scala=SCALA_VERSION,
                    log4j=LOG4J_VERSION,
                    plugin=DEPENDENCY_PLUGIN_VERSION,
                )
            )
            staging = Path(scratch) / "libs"
            command = [
                mvn,
                "--batch-mode",
                "--quiet",
                "--file",
                str(pom),
                f"-Dmaven.repo.local={root / 'm2'}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not any(staging.glob("kafka_*.jar")):
                tail = _tail(result.stdout + result.stderr, 20)
                raise LocalKafkaError(
                    f"mvn could not resolve org.apache.kafka:kafka_{SCALA_VERSION}:{version} "
                    f"(exit {result.returncode}):\n{tail}"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)  # atomic: a half download never looks like a cache hit
    return target


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def render_server_properties(broker_port: int, controller_port: int, data_dir: str) -> str:
    """``server.properties`` for one combined broker+controller tuned for fast tests."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": data_dir,
        "num.partitions": 1,
        # Topics are created on purpose; a misspelt topic should fail, not appear empty.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": 1,
        # One partition instead of 50 makes the first consumer group join quick.
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 2,
        # The default 128 MiB compaction buffer would take a quarter of the small heap.
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid`` it never starts with "-", which a command line would
    take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _cause(log: str) -> str:
    """The Java exception chain in a log excerpt as one line (outermost cause first)."""
    lines = log.splitlines()
    # "Caused by: java.net.BindException: Address already in use" -> "Address already in use"
    causes = [line.split(": ", 2)[-1] for line in lines if line.startswith("Caused by: ")]
    if causes:
        return " / ".join(dict.fromkeys(causes))
    errors = [line for line in lines if " ERROR " in line or "Exception" in line]
    return (errors or lines or ["(empty log)"])[-1]


def _die_with_parent() -> None:
    """Runs in the child: ask Linux to SIGTERM the broker if the process that owns it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _admin(bootstrap: str, timeout: float) -> AdminClient:
    # librdkafka logs every refused connection while a broker starts; failures are raised.
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "log_level": 0,
        }
    )


def probe_metadata(port: int, timeout: float = 2.0) -> tuple[int, str | None]:
    """Ask for the cluster's metadata; return (number of live brokers, cluster id).

    Raises :class:`LocalKafkaError` while nothing answers. A broker in KRaft mode only serves
    requests after it has registered with the controller, so live brokers > 0 means it is ready
    for clients.
    """
    bootstrap = f"127.0.0.1:{port}"
    try:
        metadata = _admin(bootstrap, timeout).list_topics(timeout=timeout)
    except KafkaException as error:
        raise LocalKafkaError(f"no metadata from {bootstrap}: {error.args[0].str()}") from None
    return len(metadata.brokers), metadata.cluster_id


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout: float = 30.0) -> None:
    """Create a topic (replication factor 1) and wait until every partition has a leader.

    The controller acknowledges a new topic before the broker serves it; a client that
    produced at once would see it unknown.
    """
    admin = _admin(bootstrap, timeout)
    future = admin.create_topics([NewTopic(name, num_partitions=partitions)])[name]
    try:
        future.result(timeout=timeout)
    except KafkaException as error:
        raise LocalKafkaError(f"creating topic {name} failed: {error.args[0].str()}") from None
    except TimeoutError:
        raise LocalKafkaError(f"creating topic {name}: no answer from {bootstrap}") from None
    deadline = time.monotonic() + timeout
    while True:
        topic = admin.list_topics(name, timeout=timeout).topics[name]
        leaders = [part.leader for part in topic.partitions.values()]
        if topic.error is None and len(leaders) == partitions and min(leaders) >= 0:
            return
        if time.monotonic() > deadline:
            raise LocalKafkaError(f"topic {name} has no leader after {timeout:.0f} s")
        time.sleep(0.1)


def delete_topic(bootstrap: str, name: str, timeout: float = 30.0) -> None:
    """Delete a topic and wait until the broker no longer lists it."""
    admin = _admin(bootstrap, timeout)
    try:
        admin.delete_topics([name], operation_timeout=timeout)[name].result(timeout=timeout)
    except KafkaException as error:
        raise LocalKafkaError(f"deleting topic {name} failed: {error.args[0].str()}") from None
    deadline = time.monotonic() + timeout
    while True:
        topic = admin.list_topics(name, timeout=timeout).topics.get(name)
        gone = topic is None or (
            topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        )
        if gone:
            return
        if time.monotonic() > deadline:
            raise LocalKafkaError(f"topic {name} is still listed {timeout:.0f} s after deletion")
        time.sleep(0.1)


@dataclass
class LocalKafka:
    """A running broker started by :func:`start`; :meth:`stop` ends it and deletes its data."""

    pid: int
    broker_port: int
    controller_port: int
    workdir: Path
    cluster_id: str
    process: subprocess.Popen[bytes] | None = None  # None when attached from a state file
    libs: Path | None = None  # None when attached from a state file

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def properties_path(self) -> Path:
        return self.workdir / "server.properties"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except FileNotFoundError:
            return "(no log written)"

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """End the broker (see :meth:`halt`) and delete its data."""
        self.halt(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def halt(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL after ``timeout`` seconds; the data
        stays for :meth:`resume`."""
        if self.is_running():
            os.kill(self.pid, signal.SIGTERM)
            if not self._wait_exit(timeout):
                os.kill(self.pid, signal.SIGKILL)
                self._wait_exit(timeout)

    def resume(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> None:
        """Start a halted broker again on the same ports with the same data."""
        if self.libs is None:
            raise LocalKafkaError("only a broker started by this process can be resumed")
        if self.is_running():
            raise LocalKafkaError(f"Kafka is still running at {self.bootstrap}")
        self._launch(self.libs, detach=False)
        self.wait_ready(timeout)

    def _launch(self, libs: Path, detach: bool) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                _java_command(libs, self.workdir, "kafka.Kafka", str(self.properties_path)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C in a terminal is for the caller to handle
                preexec_fn=None if detach or sys.platform != "linux" else _die_with_parent,
            )
        self.pid = self.process.pid

    def _wait_exit(self, timeout: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                tail = self.log_tail()
                error = PortInUseError if "Address already in use" in tail else LocalKafkaError
                raise error(
                    f"Kafka exited during startup: {_cause(tail)}\n"
                    f"last lines of {self.log_path}:\n{tail}"
                )
            with contextlib.suppress(LocalKafkaError):
                brokers, cluster_id = probe_metadata(self.broker_port)
                if brokers > 0 and cluster_id == self.cluster_id:
                    return
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"Kafka did not answer metadata requests on {self.bootstrap} within "
                    f"{timeout:.0f} s; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)


def _java_command(libs: Path, workdir: Path, main_class: str, *args: str) -> list[str]:
    return [
        _require("java"),
        HEAP,
        "-XX:+UseSerialGC",  # least overhead for a tiny single-node broker on two cores
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def start(
    *,
    port: int | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    detach: bool = False,
    root: Path | None = None,
) -> LocalKafka:
    """Format KRaft storage in a new temp dir, start the broker, wait until it serves metadata.

    ``port`` None picks a free port. ``detach`` lets the broker outlive this process (for the
    command line); otherwise it is terminated if this process dies.
    """
    libs = ensure_libs(root)
    attempt = 1
    while True:
        workdir = Path(tempfile.mkdtemp(prefix="streamrec-kafka-"))
        try:
            return _start_in(workdir, libs, port, timeout, detach)
        except BaseException as error:
            shutil.rmtree(workdir, ignore_errors=True)
            ports_were_ours = port is None and isinstance(error, PortInUseError)
            if not ports_were_ours or attempt == PORT_ATTEMPTS:
                raise
        attempt += 1


def _start_in(
    workdir: Path, libs: Path, port: int | None, timeout: float, detach: bool
) -> LocalKafka:
    broker_port = port if port is not None else free_port()
    broker = LocalKafka(
        pid=0,
        broker_port=broker_port,
        controller_port=free_port(),
        workdir=workdir,
        cluster_id=new_cluster_id(),
        libs=libs,
    )
    broker.properties_path.write_text(
        render_server_properties(broker.broker_port, broker.controller_port, str(workdir / "data"))
    )
    (workdir / "log4j2.properties").write_text(_LOG4J2)
    fmt = _java_command(
        libs,
        workdir,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        broker.cluster_id,
        "-c",
        str(broker.properties_path),
    )
    formatted = subprocess.run(fmt, capture_output=True, text=True, check=False)
    if formatted.returncode != 0:
        raise LocalKafkaError(
            f"formatting KRaft storage failed (exit {formatted.returncode}):\n"
            f"{_tail(formatted.stdout + formatted.stderr, 20)}"
        )
    broker._launch(libs, detach)
    try:
        broker.wait_ready(timeout)
    except BaseException:
        broker.stop()
        raise
    return broker


# --- command line -------------------------------------------------------------------------


def _state_file(root: Path) -> Path:
    return root / "local-kafka.json"


def _attach(root: Path) -> LocalKafka | None:
    """The broker a previous ``start`` left running, or None (a stale state file is removed)."""
    state = _state_file(root)
    if not state.exists():
        return None
    saved = json.loads(state.read_text())
    broker = LocalKafka(
        pid=saved["pid"],
        broker_port=saved["broker_port"],
        controller_port=saved["controller_port"],
        workdir=Path(saved["workdir"]),
        cluster_id=saved["cluster_id"],
    )
    if broker.is_running():
        return broker
    state.unlink()
    return None


def _cli_start(root: Path, port: int, timeout: float) -> int:
    running = _attach(root)
    if running is not None:
        print(f"Kafka is already running at {running.bootstrap} (pid {running.pid})")
        return 0
    began = time.monotonic()
    broker = start(port=port or None, timeout=timeout, detach=True, root=root)
    state = {
        "pid": broker.pid,
        "broker_port": broker.broker_port,
        "controller_port": broker.controller_port,
        "workdir": str(broker.workdir),
        "cluster_id": broker.cluster_id,
    }
    _state_file(root).write_text(json.dumps(state))
    print(
        f"Kafka {KAFKA_VERSION} ready at {broker.bootstrap} in {time.monotonic() - began:.1f} s "
        f"(pid {broker.pid}, log {broker.log_path})"
    )
    return 0


def _cli_stop(root: Path) -> int:
    running = _attach(root)
    if running is None:
        print("Kafka is not running")
        return 0
    running.stop()
    _state_file(root).unlink()
    print(f"stopped Kafka at {running.bootstrap}")
    return 0


def _cli_status(root: Path) -> int:
    running = _attach(root)
    if running is None:
        print("Kafka is not running")
        return 3
    print(f"Kafka running at {running.bootstrap} (pid {running.pid}, log {running.log_path})")
    return 0


def _cli_topic(root: Path, name: str, partitions: int) -> int:
    running = _attach(root)
    if running is None:
        raise LocalKafkaError("Kafka is not running; start it first")
    create_topic(running.bootstrap, name, partitions)
    print(f"created topic {name} ({partitions} partitions) on {running.bootstrap}")
    return 0


def _cli_download(root: Path) -> int:
    began = time.monotonic()
    libs = ensure_libs(root)
    jars = len(list(libs.glob("*.jar")))
    print(f"Kafka {KAFKA_VERSION}: {jars} jars in {libs} ({time.monotonic() - began:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=f"A local single-node Apache Kafka {KAFKA_VERSION} from Maven Central jars.",
        epilog=f"cache: ${CACHE_ENV} (now {cache_root()})",
    )
    parser.add_argument("command", choices=["start", "stop", "status", "topic", "download"])
    parser.add_argument("topic", nargs="?", help="the topic to create (with `topic`)")
    parser.add_argument("--partitions", type=int, default=1, help="for `topic`")
    parser.add_argument(
        "--port", type=int, default=9092, help="broker port for start (0: any free port)"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT_S)
    args = parser.parse_args(argv)
    root = cache_root()
    try:
        if args.command == "start":
            return _cli_start(root, args.port, args.timeout)
        if args.command == "stop":
            return _cli_stop(root)
        if args.command == "status":
            return _cli_status(root)
        if args.command == "topic":
            if not args.topic:
                parser.error("topic needs the name of the topic to create")
            return _cli_topic(root, args.topic, args.partitions)
        return _cli_download(root)
    except LocalKafkaError as error:
        print(f"local_kafka {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
