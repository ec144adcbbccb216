"""Prometheus metrics of the media core (served at ``/metrics``).

Every frame of every call is counted and timed, so the counting has to cost next to nothing.
prometheus_client's own ``Counter`` and ``Histogram`` take a lock on every update, about 2 of
the 14 us a media frame took to handle (measured in process). Sockets are served on the event
loop's one thread, so the figures here are plain numbers updated there, and a collector turns
them into Prometheus metrics only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

FRAME_SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
PACING_LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class Buckets:
    """A histogram's counts: how many observations fell at or below each upper bound."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: each bound with the observations at or below it."""
        bounds = [*map(floatToGoString, self.bounds), "+Inf"]
        return list(zip(bounds, accumulate(self.counts), strict=True))


class MediaStats(Collector):
    """The media core's figures, and the collector that exposes them."""

    def __init__(self) -> None:
        self.active_streams = 0
        self.frames_in = 0
        self.frames_out = 0
        self.malformed_frames = 0
        self.cleared_chunks = 0
        self.frame_seconds = Buckets(FRAME_SECONDS_BUCKETS)
        self.pacing_lateness = Buckets(PACING_LATENESS_BUCKETS)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "exoplane_media_active_streams",
            "AgentStream sockets open now",
            value=self.active_streams,
        )
        yield CounterMetricFamily(
            "exoplane_media_frames_in", "Frames received from Exotel", value=self.frames_in
        )
        yield CounterMetricFamily(
            "exoplane_media_frames_out", "Frames sent to Exotel", value=self.frames_out
        )
        yield CounterMetricFamily(
            "exoplane_media_malformed_frames",
            "Frames skipped as malformed or out of order",
            value=self.malformed_frames,
        )
        yield CounterMetricFamily(
            "exoplane_media_cleared_chunks",
            "Queued audio chunks dropped by clear (barge-in)",
            value=self.cleared_chunks,
        )
        yield _histogram(
            "exoplane_media_frame_seconds",
            "Time to handle one inbound frame, bot included",
            self.frame_seconds,
        )
        yield _histogram(
            "exoplane_media_pacing_lateness_seconds",
            "How late an outbound chunk left against its real-time schedule",
            self.pacing_lateness,
        )


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=buckets.cumulative(), sum_value=buckets.sum
    )


STATS = MediaStats()
REGISTRY.register(STATS)
