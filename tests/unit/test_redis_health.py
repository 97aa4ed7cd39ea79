"""/healthz and Redis (#18): unhealthy past a grace period with the cause the topology gave, one
log line per cause, and the kinds decided from what the error is (its types), not its words."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import AuthenticationError, RedisClusterException, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schwab_stream.redis_client import TopologyError, _cluster_problem, _network_problem
from schwab_stream.redis_topology import Cause, Problem, parse, problem
from schwab_stream.telemetry.health import PROBE_EVERY, Health, RedisWatch

SENTINELS = parse("redis+sentinel://u:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster/0")
CLUSTER = parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
ONE = parse("redis://:s3cret@127.0.0.1:6379/0")


def streaming(after: float = 10.0) -> Health:
    health = Health(after)
    health.logged_in = True
    health.set_subscribed(True, now=0.0)
    health.mark_alive(0.0)
    return health


def test_redis_away_is_unhealthy_only_past_the_grace_and_names_the_cause() -> None:
    health = streaming()
    health.redis.observe(True, 0.0)
    health.redis.observe(False, 1.0)
    health.mark_alive(9.0)
    assert health.check(9.0, 45) == (True, "ok")  # inside the grace: the publisher buffers
    health.redis.probed(problem(Cause.NO_SENTINEL, SENTINELS), 2.0)
    health.mark_alive(12.0)
    ok, reason = health.check(12.0, 45)
    assert not ok
    assert reason == (
        "redis unreachable for 11 s: no sentinel answers "
        "(2 addresses: 10.0.0.1:26379,10.0.0.2:26379)"
    )
    body = health.report(12.0, 45)
    assert body["status"] == "unhealthy" and body["redis_cause"] == "no_sentinel"
    assert body["redis_down_seconds"] == 11.0 and body["redis_unhealthy_seconds"] == 10.0
    health.redis.observe(True, 13.0)
    assert health.check(13.0, 45) == (True, "ok")
    assert health.report(13.0, 45)["redis_cause"] is None


def test_the_grace_counts_from_the_first_failure_not_the_last() -> None:
    watch = RedisWatch(5.0)
    watch.observe(False, 0.0)
    watch.observe(False, 4.0)  # (telemetry says so every second)
    assert watch.unhealthy(5.0)


def test_a_standby_that_cannot_reach_redis_says_why_at_once() -> None:
    health = Health()
    health.standby = True
    health.redis.observe(False, 0.0)
    assert health.check(0.0, 45) == (
        False,
        "standby: redis is unreachable, so no instance can take the lease",
    )
    health.redis.probed(problem(Cause.UNKNOWN_PRIMARY, SENTINELS), 0.5)
    ok, reason = health.check(0.5, 45)
    assert not ok and "the sentinels do not know primary 'mymaster'" in reason


def test_redis_comes_before_idle_and_the_schwab_side() -> None:
    health = Health(1.0)
    health.idle = True
    health.redis.observe(False, 0.0)
    health.redis.probed(problem(Cause.REFUSED, ONE, "127.0.0.1:6379"), 0.0)
    assert health.check(2.0, 45) == (
        False,
        "redis unreachable for 2 s: connection refused at 127.0.0.1:6379",
    )


def test_the_topology_is_asked_again_every_few_seconds_while_redis_is_away() -> None:
    watch = RedisWatch()
    assert not watch.probe_due(0.0)  # never seen away
    watch.observe(False, 0.0)
    assert watch.probe_due(0.0)
    watch.probed(problem(Cause.TIMEOUT, ONE), 1.0)
    assert not watch.probe_due(1.0 + PROBE_EVERY - 0.1)
    assert watch.probe_due(1.0 + PROBE_EVERY)
    watch.observe(True, 2.0)
    watch.probed(problem(Cause.TIMEOUT, ONE), 2.5)  # an answer that came after Redis did
    assert watch.problem is None and not watch.probe_due(9.0)


def test_each_cause_is_said_once_per_outage_and_the_return_once() -> None:
    watch = RedisWatch(10.0)
    watch.observe(False, 0.0)
    watch.probed(problem(Cause.NO_SENTINEL, SENTINELS), 1.0)
    assert watch.notice(5.0, standby=False) is None  # within the grace: not unhealthy yet
    said = watch.notice(10.0, standby=False)
    assert said is not None and said[0] == logging.ERROR
    assert said[1].startswith("/healthz unhealthy: redis unreachable for 10 s: no sentinel")
    assert watch.notice(11.0, standby=False) is None
    watch.probed(problem(Cause.PRIMARY_DOWN, SENTINELS), 12.0)
    said = watch.notice(12.0, standby=False)
    assert said is not None and "see primary 'mymaster' down" in said[1]
    watch.probed(problem(Cause.NO_SENTINEL, SENTINELS), 17.0)  # flapping: not said again
    assert watch.notice(17.0, standby=False) is None
    watch.observe(True, 20.0)
    assert watch.notice(20.0, standby=False) == (
        logging.INFO,
        "redis reachable again after 20 s: /healthz follows",
    )
    assert watch.notice(21.0, standby=False) is None


def test_a_standby_says_its_cause_without_waiting_for_the_grace() -> None:
    watch = RedisWatch(10.0)
    watch.observe(False, 0.0)
    assert watch.notice(0.0, standby=True) is None  # the cause is not known yet
    watch.probed(problem(Cause.NOT_CLUSTER, CLUSTER, "10.0.0.1:7000"), 0.5)
    said = watch.notice(0.5, standby=True)
    assert said is not None and "waiting as a standby" in said[1]
    assert (
        "this URL is redis+cluster:// but the server at 10.0.0.1:7000 is not in cluster"
        in (said[1])
    )


def test_no_word_shows_a_password() -> None:
    for cause in Cause:
        for where in (SENTINELS, CLUSTER, ONE):
            assert "s3cret" not in problem(cause, where, "127.0.0.1:6379").detail


def _raised(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised while handling `inner`, as redis-py does."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 (the implicit chain is what is read)
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (_raised(RedisConnectionError("Error 111"), ConnectionRefusedError(111, "x")), "refused"),
        (RedisTimeoutError("Timeout connecting to server"), "timeout"),
        (_raised(RedisConnectionError("Error -2"), OSError(-2, "Name unknown")), "unreachable"),
        (AuthenticationError("invalid username-password pair"), "auth"),
        (TopologyError(problem(Cause.UNKNOWN_PRIMARY, SENTINELS)), "unknown_primary"),
    ],
)
def test_a_network_failure_is_classified_by_its_types(error: BaseException, cause: str) -> None:
    assert _network_problem(error, ONE, "127.0.0.1:6379").cause == cause


def test_a_clusters_failure_is_classified_by_its_chain() -> None:
    not_cluster = _raised(RedisClusterException("Cluster mode is not enabled"), ResponseError())
    outer = RedisClusterException("Redis Cluster cannot be connected")
    outer.__cause__ = not_cluster
    assert _cluster_problem(outer, CLUSTER).cause is Cause.NOT_CLUSTER
    down = RedisClusterException("Redis Cluster cannot be connected")
    down.__cause__ = _raised(RedisConnectionError("Error 111"), ConnectionRefusedError(111, "x"))
    found = _cluster_problem(down, CLUSTER)
    assert found == Problem(Cause.REFUSED, "connection refused at 10.0.0.1:7000,10.0.0.2:7000")
    uncovered = RedisClusterException("All slots are not covered")
    assert _cluster_problem(uncovered, CLUSTER).cause is Cause.SLOTS_UNCOVERED
