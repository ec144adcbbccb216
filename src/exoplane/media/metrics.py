"""Prometheus metrics of the media core (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_STREAMS = Gauge("exoplane_media_active_streams", "AgentStream sockets open now")
FRAMES_IN = Counter("exoplane_media_frames_in_total", "Frames received from Exotel")
FRAMES_OUT = Counter("exoplane_media_frames_out_total", "Frames sent to Exotel")
MALFORMED_FRAMES = Counter(
    "exoplane_media_malformed_frames_total", "Frames skipped as malformed or out of order"
)
CLEARED_CHUNKS = Counter(
    "exoplane_media_cleared_chunks_total", "Queued audio chunks dropped by clear (barge-in)"
)
FRAME_SECONDS = Histogram(
    "exoplane_media_frame_seconds",
    "Time to handle one inbound frame, bot included",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
PACING_LATENESS = Histogram(
    "exoplane_media_pacing_lateness_seconds",
    "How late an outbound chunk left against its real-time schedule",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
