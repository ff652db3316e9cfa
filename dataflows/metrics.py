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
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from operators.config import Config, FileEndpoint, KafkaInput, KafkaTopic
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
        f"streamrec run: ready: reading {describe(config.input)}, lists to "
        f"{describe(config.output)}, dead letters to {describe(config.dead_letter)}"
    )


class JobMetrics:
    """Export the newest running total of the accounting sink."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._total = Tally()
        registry.register(self)

    @classmethod
    def live(cls, config: Config) -> JobMetrics:
        """The live job's metrics in the default registry; logs the ready line, as Bytewax gets
        the dataflow only once the config and any warm start are loaded."""
        print(ready_line(config), file=sys.stderr, flush=True)
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
        late = CounterMetricFamily(
            "streamrec_late_events", "Processed events that were late but within the lateness."
        )
        late.add_metric([], total.late)
        yield late
        lists = CounterMetricFamily("streamrec_lists_out", "Recommendation lists written.")
        lists.add_metric([], total.lists_out)
        yield lists
        tombstones = CounterMetricFamily(
            "streamrec_tombstones", "Users forgotten (null values written under their key)."
        )
        tombstones.add_metric([], total.tombstones)
        yield tombstones
        pending = GaugeMetricFamily(
            "streamrec_events_pending",
            "Messages read but not yet processed or dead-lettered (in flight).",
        )
        pending.add_metric([], total.pending)
        yield pending
