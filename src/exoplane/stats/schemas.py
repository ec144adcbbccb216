"""What ``GET /api/v1/stats`` answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from exoplane.responses import resource_time
from exoplane.stats.service import Bucket, Percentiles, Window


def _percentiles(values: Percentiles) -> dict[str, int | None]:
    return {"p50": values.p50, "p99": values.p99}


def stats_view(chosen: Window, buckets: list[Bucket]) -> dict[str, Any]:
    return {
        "since": resource_time(chosen.since),
        "until": resource_time(chosen.until),
        "bucket": chosen.bucket,
        "buckets": [
            {
                "start": resource_time(bucket.start),
                "webhooks": {
                    "deliveries": bucket.deliveries,
                    "attempts": bucket.attempts,
                    "latency_ms": _percentiles(bucket.latency_ms),
                },
                "calls": bucket.calls,
                "streams": {
                    "started": bucket.streams,
                    "first_bot_audio_ms": _percentiles(bucket.first_bot_audio_ms),
                },
            }
            for bucket in buckets
        ],
    }


class PercentilesView(BaseModel):
    p50: int | None
    p99: int | None


class WebhookStats(BaseModel):
    deliveries: dict[str, int] = Field(
        description="Deliveries queued in the bucket, by status now: succeeded, failed, pending"
    )
    attempts: int = Field(description="HTTP attempts made in the bucket")
    latency_ms: PercentilesView = Field(description="How long those attempts took")


class StreamStats(BaseModel):
    started: int = Field(description="Voice-bot streams started in the bucket")
    first_bot_audio_ms: PercentilesView = Field(
        description="Time from a stream's start to its bot's first audio"
    )


class BucketView(BaseModel):
    start: str
    webhooks: WebhookStats
    calls: dict[str, int] = Field(
        description="The apps' calls started in the bucket, by outcome: answered, missed, "
        "busy, failed, canceled, ongoing"
    )
    streams: StreamStats


class StatsView(BaseModel):
    since: str
    until: str
    bucket: str
    buckets: list[BucketView]
