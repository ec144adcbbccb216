"""The media core's figures, as Prometheus reads them from ``/metrics``."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from exoplane.media.metrics import FRAME_SECONDS_BUCKETS, PACING_LATENESS_BUCKETS, MediaStats

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(collector: Collector) -> Samples:
    """Every sample of a registry holding only ``collector``, by name and labels."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_counters_and_the_gauge_are_exposed_under_their_names() -> None:
    stats = MediaStats()
    stats.active_streams = 3
    stats.frames_in += 10
    stats.frames_out += 5
    stats.malformed_frames += 2
    stats.cleared_chunks += 7

    samples = scrape(stats)

    assert samples[("exoplane_media_active_streams", ())] == 3
    assert samples[("exoplane_media_frames_in_total", ())] == 10
    assert samples[("exoplane_media_frames_out_total", ())] == 5
    assert samples[("exoplane_media_malformed_frames_total", ())] == 2
    assert samples[("exoplane_media_cleared_chunks_total", ())] == 7


# On a bound, just above one, beyond the last, far below the first, and zero.
OBSERVATIONS = [0.0005, 0.0006, 0.5, 0.00001, 0.0, 0.01, 0.0100001]


@pytest.mark.parametrize(
    ("attribute", "name", "bounds"),
    [
        ("frame_seconds", "exoplane_media_frame_seconds", FRAME_SECONDS_BUCKETS),
        ("pacing_lateness", "exoplane_media_pacing_lateness_seconds", PACING_LATENESS_BUCKETS),
    ],
)
@pytest.mark.parametrize("count", [0, 1, len(OBSERVATIONS)])
def test_histograms_read_exactly_as_prometheus_clients_own(
    attribute: str, name: str, bounds: tuple[float, ...], count: int
) -> None:
    stats = MediaStats()
    registry = CollectorRegistry()
    reference = Histogram(name, "reference", buckets=bounds, registry=registry)
    for seconds in OBSERVATIONS[:count]:
        getattr(stats, attribute).observe(seconds)
        reference.observe(seconds)

    ours = {key: value for key, value in scrape(stats).items() if key[0].startswith(name)}
    theirs = {key: value for key, value in scrape(registry).items() if key[0].startswith(name)}

    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value), key
    assert ours[(f"{name}_count", ())] == count


def test_a_value_on_a_bound_counts_in_that_bounds_bucket() -> None:
    stats = MediaStats()
    stats.frame_seconds.observe(0.0005)

    samples = scrape(stats)

    assert samples[("exoplane_media_frame_seconds_bucket", (("le", "0.00025"),))] == 0
    assert samples[("exoplane_media_frame_seconds_bucket", (("le", "0.0005"),))] == 1
