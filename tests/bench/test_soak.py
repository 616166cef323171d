"""The pure part of ``bench/soak.py`` (the soak itself is run by hand): the fault schedule and
the report's judgements, from synthetic histories."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


soak = _load()
EXPIRE = 10.0


def write(n: int, sent: float, done: float, outcome: str = "acked", key: str = "k0") -> object:
    return soak.Write(
        n,
        (key, soak.HEAD),
        soak.value_of(n),
        sent,
        done,
        outcome,
        n if outcome == "acked" else None,
    )


def read(name: str, sent: float, n: int | None, *, stale: bool = False, ttl: int = 60) -> object:
    values = frozenset() if n is None else frozenset({soak.value_of(n)})
    rcode = "NOERROR" if n is not None else "NXDOMAIN"
    return soak.Read(
        "m01", name, sent, sent + 0.01, rcode, values, stale, ttl if n is not None else None
    )


@settings(max_examples=100, deadline=None)
@given(
    duration=st.floats(30, 3600),
    mirrors=st.integers(2, 30),
    kill_every=st.floats(5, 120),
    seed=st.integers(0, 2**31),
)
def test_schedule_kills_partitions_and_heals_within_the_run(
    duration: float, mirrors: int, kill_every: float, seed: int
) -> None:
    names = [f"m{i:02d}" for i in range(1, mirrors + 1)]
    plan = soak.schedule(
        duration, names, kill_every=kill_every, partition_for=duration / 6, rng=random.Random(seed)
    )
    assert [f.at for f in plan] == sorted(f.at for f in plan)
    assert all(0 < f.at <= duration for f in plan)
    kills = [f for f in plan if f.kind == "kill"]
    assert len(kills) == len([k for k in range(1, 10_000) if k * kill_every < duration])
    assert all(f.targets[0] in names for f in kills)
    registry = [f for f in plan if f.kind == "kill-registry"]
    assert len(registry) <= soak.REGISTRY_KILLS
    if duration > 2 * kill_every:
        assert len(registry) == soak.REGISTRY_KILLS
    (cut,) = [f for f in plan if f.kind == "partition"]
    (heal,) = [f for f in plan if f.kind == "heal"]
    assert cut.targets == heal.targets and cut.at <= heal.at
    assert len(cut.targets) == max(1, round(mirrors / 3)) and set(cut.targets) <= set(names)


def history() -> object:
    """Writes 0-3 to k0 (and head): 0 and 1 acknowledged at 1 and 2, 2 refused, 3 unknown,
    4 acknowledged at 20."""
    return soak.History(
        [
            write(0, 0.5, 1.0),
            write(1, 1.5, 2.0),
            write(2, 2.5, 3.0, "refused"),
            write(3, 3.5, 8.5, "unknown"),
            write(4, 19.5, 20.0),
        ]
    )


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        (read("k0", 5.0, 1), False),  # the newest acknowledged
        (read("k0", 5.0, 0), False),  # 3 s behind: within the declared staleness
        (read("k0", 11.5, 0), False),  # 9.5 s behind: within expire + slack
        (read("k0", 14.5, 0), True),  # 12.5 s behind, unmarked: beyond expire + slack
        (read("k0", 14.5, 0, stale=True), False),  # as much behind, but marked stale
        (read("k0", 14.5, 0, ttl=40), False),  # cached: 20 s of its TTL counted down
        (read("k0", 40.0, 0, ttl=40), True),  # cached, but older than that
        (read("k0", 30.0, 3), False),  # an unknown write may have been committed
        (read("k0", 5.0, 2), True),  # a refused write's value
        (read("k0", 1.0, 3), True),  # a value not yet written
        (read("k0", 5.0, 77), True),  # never written at all
        (read("k1", 5.0, 1), True),  # written, but to another name
        (read("head", 0.5, None), False),  # nothing acknowledged yet
        (read("head", 20.0, None), True),  # NXDOMAIN 19 s after the first acknowledgement
    ],
)
def test_an_answer_is_wrong_when_it_contradicts_an_acknowledged_write(
    answer: object, wrong: bool
) -> None:
    judged = soak.judge_reads(history(), [answer], EXPIRE)
    assert bool(judged.wrong) == wrong, judged.wrong
    assert judged.answered == 1


def test_answers_count_lags_and_unanswered_questions() -> None:
    reads = [
        read("head", 12.0, 0, stale=True),  # 10 s behind write 1
        read("head", 6.0, 1),
        soak.Read("m02", "head", 7.0, 9.0, None),
        soak.Read("m02", "head", 7.0, 7.1, "SERVFAIL"),
    ]
    judged = soak.judge_reads(history(), reads, EXPIRE)
    assert (judged.asked, judged.answered, judged.marked_stale) == (4, 2, 1)
    assert judged.unanswered == {"timeout": 1, "SERVFAIL": 1}
    assert judged.max_lag == pytest.approx(10.0) and judged.max_lag_unmarked == 0.0
    assert judged.lag_node == "m01" and not judged.wrong


@pytest.mark.parametrize(
    ("shown", "before", "lost"),
    [
        ({"k0": 4, "head": 4}, float("inf"), []),
        ({"k0": 1, "head": 4}, float("inf"), [4]),  # k0 lost the last write
        ({"k0": 1, "head": 1}, float("inf"), [4]),
        ({"k0": 1, "head": 1}, 10.0, []),  # 4 was acknowledged after the crash
        ({"k0": 3, "head": 3}, 10.0, []),  # an unknown write, later than every acknowledged
        ({"k0": 0, "head": 1}, 10.0, [1]),
        ({"head": 4}, float("inf"), [0, 1, 4]),  # k0 not answered at all
        ({"k0": None, "head": 4}, float("inf"), [0, 1, 4]),  # k0 NXDOMAIN
        ({"k0": 77, "head": 4}, float("inf"), [0, 1, 4]),  # k0 holds a value never written
    ],
)
def test_lost_writes_are_acknowledged_writes_no_answer_holds(
    shown: dict[str, int | None], before: float, lost: list[int]
) -> None:
    answers = {name: read(name, 30.0, n) for name, n in shown.items()}
    assert [w.n for w in soak.lost_writes(history(), answers, before=before)] == lost


def test_a_server_not_answering_holds_nothing() -> None:
    answers = {name: soak.Read("m01", name, 30.0, 32.0, None) for name in ("k0", "head")}
    assert [w.n for w in soak.lost_writes(history(), answers)] == [0, 1, 4]


def test_propagation_is_measured_from_the_sending_and_split_by_faults() -> None:
    applied = {
        "m01": [(1.1, 0), (2.2, 1), (21.0, 3), (30.0, 5)],  # 0 at 1.1, 1 at 2.2, 4 at 30
        "m02": [(0.9, 0)],  # never installed 1 nor 4
    }
    spans = [soak.Span("m01", "down", 25.0, 29.0)]
    prop = soak.propagation(history(), applied, spans, margin=EXPIRE)
    assert sorted(prop.everything) == pytest.approx(sorted([0.6, 0.7, 10.5, 0.4]))
    assert sorted(prop.clear) == pytest.approx(sorted([0.6, 0.7, 0.4]))
    assert prop.never == 2


def test_propagation_counts_a_fault_shortly_before_the_sending() -> None:
    applied = {"m01": [(1.1, 0), (2.2, 1), (21.0, 4)]}
    spans = [soak.Span(soak.REGISTRY, "down", 10.0, 15.0)]
    prop = soak.propagation(history(), applied, spans, margin=EXPIRE)
    assert len(prop.everything) == 3 and len(prop.clear) == 2  # write 4, sent 4.5 s after


def samples(node: str, pid: int, start: float, rss: int, fds: int, cpu_per_s: float) -> list:
    return [
        soak.Sample(node, pid, start + t, rss, fds, cpu_per_s * (start + t)) for t in range(0, 10)
    ]


@pytest.mark.parametrize(
    ("end_rss", "end_fds", "end_cpu", "grew"),
    [
        (100_000, 20, 0.010, []),
        (104_000, 22, 0.0104, []),  # within 5% (and 2 descriptors)
        (106_000, 20, 0.010, ["RSS"]),
        (100_000, 23, 0.010, ["open files"]),
        (100_000, 20, 0.0106, ["CPU"]),
    ],
)
def test_growth_compares_the_warm_window_with_the_end(
    end_rss: int, end_fds: int, end_cpu: float, grew: list[str]
) -> None:
    taken = samples("m01", 7, 10.0, 100_000, 20, 0.010)
    taken += [
        soak.Sample("m01", 7, s.at + 80, end_rss, end_fds, 0.1 + end_cpu * (s.at + 80))
        for s in taken
    ]
    (judged,) = soak.growth(taken, {7: 0.0}, begin=0.0, end=100.0, warm=10.0, window=10.0)
    assert judged.judged and judged.grew == grew


def test_growth_judges_the_last_process_only_once_it_is_warm() -> None:
    taken = samples("m01", 7, 10.0, 100_000, 20, 0.01) + samples("m01", 8, 85.0, 50_000, 20, 0.01)
    (late,) = soak.growth(taken, {7: 0.0, 8: 80.0}, begin=0.0, end=100.0, warm=10.0, window=10.0)
    assert late.pid == 8 and late.restarts == 1 and not late.judged and not late.grew


def test_growth_takes_its_baseline_once_a_partition_has_ended() -> None:
    # Cut off from 0 to 40 s, the node idles (1 ms/s); once healed it works (10 ms/s). Its
    # baseline is taken after the heal, so the end (still 10 ms/s) is no growth.
    def cpu(t: float) -> float:
        return 0.001 * min(t, 40) + 0.010 * max(t - 40, 0)

    taken = [soak.Sample("m01", 7, float(t), 100_000, 20, cpu(t)) for t in range(121)]
    cut = soak.Span("m01", "partitioned", 0.0, 40.0)
    (blind,) = soak.growth(taken, {7: 0.0}, begin=0.0, end=120.0, warm=10.0, window=10.0)
    (seen,) = soak.growth(
        taken, {7: 0.0}, begin=0.0, end=120.0, warm=10.0, window=10.0, spans=[cut]
    )
    assert blind.grew == ["CPU"]  # a baseline inside the partition reads as growth
    assert seen.judged and seen.grew == []
