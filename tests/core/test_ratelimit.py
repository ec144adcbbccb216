"""The in-process sliding-window counter, at chosen instants."""

from __future__ import annotations

from limits import parse

from exoplane.ratelimit import LocalRateLimiter

MINUTE_START = 600.0  # a multiple of 60: the first instant of a fixed one-minute window


def spend(limiter: LocalRateLimiter, principal: str, count: int, now: float) -> None:
    for _ in range(count):
        assert limiter.hit_at(principal, now).allowed


def test_the_hit_after_the_budget_is_refused_until_the_window_has_slid_on() -> None:
    limiter = LocalRateLimiter(parse("10/minute"))
    spend(limiter, "app:a", 10, MINUTE_START)

    refused = limiter.hit_at("app:a", MINUTE_START + 30)

    assert not refused.allowed
    assert refused.remaining == 0
    # The window ends in 30 s; its ten hits then weigh 10 x (1 - elapsed / 60), which drops
    # below ten as soon as the next window starts.
    assert refused.reset_after == 30
    assert limiter.hit_at("app:a", MINUTE_START + 61).allowed


def test_the_previous_window_weighs_less_as_it_slides_out() -> None:
    limiter = LocalRateLimiter(parse("10/minute"))
    spend(limiter, "app:a", 10, MINUTE_START)

    # 15 s into the next window three quarters of the ten still count: 7.5. A hit fits while
    # the count rounded down is below the limit, so three do.
    spend(limiter, "app:a", 3, MINUTE_START + 75)
    refused = limiter.hit_at("app:a", MINUTE_START + 75)

    assert not refused.allowed
    # One more fits once 10 x left + 3 < 10, that is once less than 7/10 of the window is left.
    assert refused.reset_after == 3
    assert limiter.hit_at("app:a", MINUTE_START + 78.5).allowed


def test_remaining_counts_down_from_the_limit() -> None:
    limiter = LocalRateLimiter(parse("200/minute"))

    first = limiter.hit_at("app:a", MINUTE_START + 1)
    second = limiter.hit_at("app:a", MINUTE_START + 2)

    assert (first.limit, first.remaining, second.remaining) == (200, 199, 198)
    assert first.reset_after == 59


def test_principals_have_their_own_budgets() -> None:
    limiter = LocalRateLimiter(parse("1/second"))

    assert limiter.hit_at("app:a", MINUTE_START).allowed
    assert not limiter.hit_at("app:a", MINUTE_START).allowed
    assert limiter.hit_at("app:b", MINUTE_START).allowed


def test_a_budget_spent_long_ago_is_whole_again() -> None:
    limiter = LocalRateLimiter(parse("5/minute"))
    spend(limiter, "app:a", 5, MINUTE_START)
    spend(limiter, "app:b", 1, MINUTE_START + 300)

    assert limiter.hit_at("app:a", MINUTE_START + 300).remaining == 4


def test_asking_whether_a_budget_is_spent_spends_none_of_it() -> None:
    limiter = LocalRateLimiter(parse("3/minute"))
    spend(limiter, "address:a", 2, MINUTE_START)

    assert not limiter.spent_at("address:a", MINUTE_START + 1)
    assert not limiter.spent_at("address:a", MINUTE_START + 1)
    spend(limiter, "address:a", 1, MINUTE_START + 2)
    assert limiter.spent_at("address:a", MINUTE_START + 3)
    assert not limiter.spent_at("address:b", MINUTE_START + 3)
    # Half of the next window in, the three hits weigh 1.5: room again.
    assert not limiter.spent_at("address:a", MINUTE_START + 90)
