"""Prometheus metrics.

Workers run in other processes than the web app that is scraped, so their stage durations use
prometheus-client's multiprocess mode: each process writes its samples to files in a shared
directory (under the data dir), and the scrape merges them. Queue figures are not kept in
memory at all: they are read from the database at scrape time, so every process (and every
machine sharing the database) reports the same truth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.clock import Clock
from gateway.db import read_scope
from gateway.queue.stats import oldest_runnable_age, state_counts
from gateway.serve.part_status import FILE_NAME as PART_STATUS_FILE
from gateway.serve.part_status import PartState, read_status
from gateway.settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def metrics_dir(settings: Settings) -> Path:
    return settings.resolve(settings.data_dir) / "metrics"


def reset_metrics_dir(directory: Path) -> None:
    """Start with no samples: files of processes from an earlier run would be summed in."""
    directory.mkdir(parents=True, exist_ok=True)
    # Only prometheus-client's own files, so a mistaken data_dir cannot cost anything else.
    for path in directory.glob("*.db"):
        path.unlink()


def enable_multiprocess(directory: Path) -> None:
    """Make metrics created from now on in this process write to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus-client picks its value class when first imported; pick again, in case it was
    # imported before the directory was known.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class StageMetrics:
    """A StageTimer (gateway.pipeline.driver) that observes the stage duration histogram."""

    def __init__(self) -> None:
        if MULTIPROC_ENV not in os.environ:
            raise RuntimeError("call enable_multiprocess() before creating StageMetrics")
        # Not in the default registry: the scrape side reads the samples from the files.
        self.histogram = Histogram(
            "xgate_stage_duration_seconds", "Time a pipeline stage took, per stage",
            ["stage"], buckets=STAGE_BUCKETS, registry=None,
        )

    def __call__(self, stage: str, seconds: float) -> None:
        self.histogram.labels(stage=stage).observe(seconds)


class QueueCollector(Collector):
    """Queue figures computed from the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("xgate_database_up",
                               "1 if the database answered this scrape, else 0")
        try:
            with read_scope(self.sessions) as session:
                counts = state_counts(session)
                age = oldest_runnable_age(session, self.clock())
        except SQLAlchemyError as exc:
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_state = GaugeMetricFamily("xgate_messages", "Messages in the queue by state",
                                     labels=["state"])
        for state, count in counts.items():
            by_state.add_metric([state.value], count)
        yield by_state
        yield GaugeMetricFamily(
            "xgate_queue_oldest_runnable_age_seconds",
            "Seconds since the oldest message waiting for a worker was received (0 if none)",
            value=age,
        )


class PartsCollector(Collector):
    """The parts of ``xgate serve`` as its supervisor last wrote them (gateway.serve.part_status):
    restarts, flapping, up. Nothing without a running supervisor."""

    def __init__(self, status_file: Path) -> None:
        self.status_file = status_file

    def collect(self) -> Iterator[Metric]:
        parts = read_status(self.status_file)
        if parts is None:
            return
        restarts = CounterMetricFamily(
            "xgate_part_restarts", "Times the supervisor restarted a part of xgate serve",
            labels=["part"])
        flapping = GaugeMetricFamily(
            "xgate_part_flapping",
            "1 while a part keeps dying right after its start (it is restarted with backoff)",
            labels=["part"])
        up = GaugeMetricFamily("xgate_part_up", "1 while a part's process is running",
                               labels=["part"])
        for name, part in sorted(parts.items()):
            restarts.add_metric([name], part.restarts)
            flapping.add_metric([name], 1 if part.flapping else 0)
            up.add_metric([name], 1 if part.state == PartState.RUNNING else 0)
        yield restarts
        yield flapping
        yield up


def part_status_file(settings: Settings) -> Path:
    return metrics_dir(settings) / PART_STATUS_FILE


def scrape_registry(directory: Path, *live: Collector) -> CollectorRegistry:
    """A registry for one scrape: the workers' files merged, plus figures read live from the
    database (the queue, expiring keys)."""
    registry = CollectorRegistry()
    if directory.is_dir():
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    for collector in live:
        registry.register(collector)
    return registry
