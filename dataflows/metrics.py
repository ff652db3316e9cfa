"""The live job's accounting as Prometheus metrics, and its "ready" line.

:class:`JobMetrics` is the report callback of the accounting sink
(:class:`~dataflows.connectors.TallySink`): it keeps the newest running
:class:`~operators.tally.Tally` and, registered with ``prometheus_client``'s default registry,
exports it whenever ``/metrics`` is scraped. Bytewax's own API server (``streamrec run
--metrics-port``) serves that registry beside its per-step metrics, so one port has both.

The totals are the sink's snapshot, so after a restart from the recovery store the counters
continue where they were from the first batch on (Bytewax builds the sink when its first item
arrives; until then they read 0, which Prometheus takes for a counter reset). Only the process
holding the accounting partition exports them; every process serves Bytewax's step metrics.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> metrics = JobMetrics(registry)
>>> metrics(Tally(events_in=3, processed=2, dead_lettered=1, lists_out=2))
>>> text = generate_latest(registry).decode()
>>> 'streamrec_events_total{outcome="dead_lettered"} 1.0' in text
True
>>> "streamrec_events_pending 0.0" in text
True

The model replicas of this process are watched by :data:`REPLICAS` (items in state, the online
quality of what they served), and the replica step times its work into :data:`TIMINGS`; both
are per process, as Prometheus expects of gauges and histograms (sum or average across
processes in the query).
"""

from __future__ import annotations

import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dataflows import logs
from operators.config import Config, FileEndpoint, KafkaInput, KafkaTopic
from operators.quality import OnlineQuality
from operators.replica import ModelReplica
from operators.tally import Tally


def describe(endpoint: KafkaInput | KafkaTopic | FileEndpoint | None) -> str:
    """An input or output as a person names it.

    >>> describe(KafkaTopic("streamrec.recommendations")), describe(None)
    ('topic streamrec.recommendations', 'nowhere (counted only)')
    """
    if endpoint is None:
        return "nowhere (counted only)"
    if isinstance(endpoint, FileEndpoint):
        return f"file {endpoint.path}"
    return f"topic {endpoint.topic}"


def ready_line(config: Config) -> str:
    """The one line the live job logs when its dataflow is built and handed to Bytewax."""
    return (
        f"ready: reading {describe(config.input)}, lists to "
        f"{describe(config.output)}, dead letters to {describe(config.dead_letter)}"
    )


class JobMetrics:
    """Export the newest running total of the accounting sink."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._total = Tally()
        registry.register(self)

    @classmethod
    def live(cls, config: Config) -> JobMetrics:
        """The live job's metrics in the default registry (with :data:`REPLICAS` and
        :data:`TIMINGS`); logs the ready line, as Bytewax gets the dataflow only once the config
        and any warm start are loaded."""
        logs.from_environment().info(ready_line(config))
        REGISTRY.register(REPLICAS)
        TIMINGS.register(REGISTRY)
        return cls(REGISTRY)

    def __call__(self, total: Tally) -> None:
        self._total = total

    def collect(self) -> Iterator[Metric]:
        total = self._total
        events_in = CounterMetricFamily("streamrec_events_in", "Input messages read, valid or not.")
        events_in.add_metric([], total.events_in)
        yield events_in
        outcomes = CounterMetricFamily(
            "streamrec_events",
            "Input messages by outcome: processed (learned, or a forget_user) or dead_lettered "
            "(unparseable, invalid, duplicate, too late, oversize).",
            labels=["outcome"],
        )
        outcomes.add_metric(["processed"], total.processed)
        outcomes.add_metric(["dead_lettered"], total.dead_lettered)
        yield outcomes
        dead = CounterMetricFamily(
            "streamrec_dead_letters",
            "Messages dead-lettered, by kind of reason (operators.intake.DEAD_LETTER_KINDS).",
            labels=["reason"],
        )
        for kind, count in total.dead_by_kind().items():
            dead.add_metric([kind], count)
        yield dead
        late = CounterMetricFamily(
            "streamrec_late_events", "Processed events that were late but within the lateness."
        )
        late.add_metric([], total.late)
        yield late
        lists = CounterMetricFamily("streamrec_lists_out", "Recommendation lists written.")
        lists.add_metric([], total.lists_out)
        yield lists
        tombstones = CounterMetricFamily(
            "streamrec_tombstones",
            "Users forgotten or expired (null values written under their key).",
        )
        tombstones.add_metric([], total.tombstones)
        yield tombstones
        pending = GaugeMetricFamily(
            "streamrec_events_pending",
            "Messages read but not yet processed or dead-lettered (in flight).",
        )
        pending.add_metric([], total.pending)
        yield pending
        users = GaugeMetricFamily("streamrec_users", "Users whose state the job holds.")
        users.add_metric([], total.users)
        yield users


@dataclass
class _QualitySums:
    """The quality windows of one model's replicas in this process, added up."""

    hits: int = 0
    gain: float = 0.0
    window: int = 0
    targets: int = 0

    def add(self, quality: OnlineQuality) -> None:
        self.hits += quality.window_hits
        self.gain += quality.window_gain
        self.window += quality.window_targets
        self.targets += quality.targets


class ReplicaGauges:
    """Collects the gauges of the model replicas alive in this process.

    >>> from operators.engine_config import EngineConfig
    >>> replica = ModelReplica(EngineConfig())
    >>> replica.quality.score(1)  # a target at rank 1 of its list, then a miss
    >>> replica.quality.score(None)
    >>> gauges, registry = ReplicaGauges(), CollectorRegistry()
    >>> gauges.watch(replica)
    >>> registry.register(gauges)
    >>> registry.get_sample_value("streamrec_online_hit_rate", {"model": "streamrec"})
    0.5
    """

    def __init__(self) -> None:
        self._replicas: weakref.WeakSet[ModelReplica] = weakref.WeakSet()

    def watch(self, replica: ModelReplica) -> None:
        self._replicas.add(replica)

    def collect(self) -> Iterator[Metric]:
        replicas = list(self._replicas)
        items = GaugeMetricFamily(
            "streamrec_items", "Items in the item model (every replica holds them all)."
        )
        items.add_metric([], max((len(replica.items) for replica in replicas), default=0))
        yield items
        by_model: dict[str, _QualitySums] = defaultdict(_QualitySums)
        for replica in replicas:
            by_model[replica.config.model_name].add(replica.quality)
        k = max((replica.config.k for replica in replicas), default=10)
        families = {
            "hit_rate": GaugeMetricFamily(
                "streamrec_online_hit_rate",
                f"HR@{k} of the latest quality.window_targets targets (items new to a user) "
                "against the list served to the user before them.",
                labels=["model"],
            ),
            "ndcg": GaugeMetricFamily(
                "streamrec_online_ndcg",
                f"NDCG@{k} of the same targets (1 / log2(rank + 1) per target, 0 for a miss).",
                labels=["model"],
            ),
        }
        targets = CounterMetricFamily(
            "streamrec_online_targets",
            "Targets scored against a served list since the process started.",
            labels=["model"],
        )
        for model, sums in by_model.items():
            window = sums.window or 1
            families["hit_rate"].add_metric([model], sums.hits / window)
            families["ndcg"].add_metric([model], sums.gain / window)
            targets.add_metric([model], sums.targets)
        yield from families.values()
        yield targets


#: Bucket bounds of the time histograms, 10 us to 10 s.
_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _histogram(name: str, documentation: str) -> Histogram:
    return Histogram(name, documentation, buckets=_BUCKETS, registry=None)


@dataclass
class Timings:
    """Histograms of the replica step's work, observed once registered (:meth:`register`).

    >>> timings, registry = Timings(), CollectorRegistry()
    >>> timings.served(0.002, None)  # nothing collects them yet: not observed
    >>> timings.register(registry)
    >>> timings.served(0.002, None)
    >>> registry.get_sample_value("streamrec_ranking_seconds_count")
    1.0
    """

    update: Histogram = field(
        default_factory=lambda: _histogram(
            "streamrec_model_update_seconds",
            "Seconds a replica spends learning one of its users' events (item model, and the "
            "ranker when the event is a target); other workers' events come in blocks, untimed.",
        )
    )
    ranking: Histogram = field(
        default_factory=lambda: _histogram(
            "streamrec_ranking_seconds",
            "Seconds to serve one list (candidates, features, ranking).",
        )
    )
    latency: Histogram = field(
        default_factory=lambda: _histogram(
            "streamrec_event_to_list_seconds",
            "Seconds from an event reaching the user step to the list it caused leaving the "
            "replica step (lists closed by a timer or the input's end are not counted).",
        )
    )

    #: Whether a registry collects the histograms: until then nothing is observed (a replay
    #: has no metrics endpoint; observing took 0.75 of its 17 CPU-seconds on 100,000 retail
    #: events, under pyinstrument).
    registered: bool = False

    def register(self, registry: CollectorRegistry) -> None:
        for histogram in (self.update, self.ranking, self.latency):
            registry.register(histogram)
        self.registered = True

    def updated(self, seconds: float) -> None:
        if self.registered:
            self.update.observe(seconds)

    def served(self, seconds: float, received_s: float | None) -> None:
        if not self.registered:
            return
        self.ranking.observe(seconds)
        if received_s is not None:
            self.latency.observe(time.time() - received_s)


#: This process's replicas and the replica step's timings.
REPLICAS = ReplicaGauges()
TIMINGS = Timings()
