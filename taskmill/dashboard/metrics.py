"""``/metrics``: the scheduler in Prometheus' text format.

A custom collector reads the state and the monitor at scrape time (nothing
is counted twice, nothing is done per task for it beyond the monitor's own
counters).  Tasks by state come from the dashboard feed's shared, throttled
scan (:class:`~taskmill.dashboard.feed.DashboardFeed`), so a scrape does not
walk every task; those gauges may be a couple of seconds old, the counters
are exact.  Metric names follow Prometheus conventions (``_total`` counters,
base units: seconds and bytes).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from taskmill.core.scheduler.records import ALL_STATES
from taskmill.dashboard.feed import DashboardFeed
from taskmill.dashboard.monitor import DURATION_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SchedulerCollector(Collector):
    """Collects from a running :class:`~taskmill.server.scheduler.Scheduler`."""

    def __init__(self, feed: DashboardFeed) -> None:
        self.feed = feed

    def collect(self) -> Iterator[Metric]:
        s = self.feed.scheduler
        state, mon = s.state, s.monitor
        by_state = dict.fromkeys(sorted(ALL_STATES - {"forgotten"}), 0)
        for (_, st), n in self.feed.counts.get().items():
            by_state[st] = by_state.get(st, 0) + n
        tasks = GaugeMetricFamily("taskmill_tasks", "Tasks known to the scheduler, by state",
                                  labels=["state"])
        for name, n in by_state.items():
            tasks.add_metric([name], n)
        yield tasks

        done = CounterMetricFamily("taskmill_tasks_completed", "Tasks that ran to an end, by outcome",
                                   labels=["outcome"])
        done.add_metric(["finished"], mon.tasks_total - mon.erred_total)
        done.add_metric(["erred"], mon.erred_total)
        yield done

        buckets = []
        acc = 0
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), mon.duration_buckets):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        yield HistogramMetricFamily("taskmill_task_duration_seconds",
                                    "Compute time of finished and erred tasks",
                                    buckets=buckets, sum_value=mon.duration_sum)

        group_seconds = CounterMetricFamily("taskmill_task_group_compute_seconds",
                                            "Compute seconds per task group", labels=["group"])
        for name, g in sorted(mon.groups.items(), key=lambda kv: -kv[1].seconds)[:200]:
            group_seconds.add_metric([name], g.seconds)
        yield group_seconds

        yield CounterMetricFamily("taskmill_transfers", "Transfers of task inputs between workers",
                                  value=mon.transfer_count)
        yield CounterMetricFamily("taskmill_transfer_bytes", "Bytes moved between workers",
                                  value=mon.transfer_bytes)
        yield CounterMetricFamily("taskmill_transfer_seconds", "Time spent fetching inputs",
                                  value=mon.transfer_seconds)

        yield GaugeMetricFamily("taskmill_workers", "Connected workers", value=len(state.workers))
        yield GaugeMetricFamily("taskmill_threads", "Worker threads",
                                value=sum(ws.nthreads for ws in state.workers.values()))
        yield GaugeMetricFamily("taskmill_clients", "Connected clients", value=len(s.client_streams))
        memory = GaugeMetricFamily("taskmill_worker_memory_bytes",
                                   "Worker memory: process RSS, managed (results held), limit",
                                   labels=["worker", "kind"])
        for address, ws in sorted(state.workers.items()):
            rss = s.worker_extra.get(address, {}).get("memory", ws.memory) or ws.memory
            memory.add_metric([address, "process"], rss)
            memory.add_metric([address, "managed"], ws.nbytes)
            memory.add_metric([address, "limit"], ws.memory_limit)
        yield memory
        processing = GaugeMetricFamily("taskmill_worker_processing_tasks",
                                       "Tasks assigned to each worker", labels=["worker"])
        for address, ws in sorted(state.workers.items()):
            processing.add_metric([address], len(ws.processing))
        yield processing

        yield GaugeMetricFamily("taskmill_event_loop_delay_seconds",
                                "How late the scheduler's event loop woke a 0.5 s timer, last sample",
                                value=mon.loop_delay)
        yield GaugeMetricFamily("taskmill_event_loop_delay_max_seconds",
                                "Largest event-loop delay seen", value=mon.loop_delay_max)
        yield CounterMetricFamily("taskmill_dashboard_cpu_seconds",
                                  "Scheduler CPU seconds spent on the dashboard and /metrics",
                                  value=self.feed.cpu_seconds)


def metrics_text(feed: DashboardFeed) -> bytes:
    """The scheduler's metrics, rendered once (the time it takes counts in
    ``feed.cpu_seconds``)."""
    with feed.timed():
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SchedulerCollector(feed))
        return generate_latest(registry)
