"""The latency noise floor: its statistics on hand-made numbers, the disturbed flag, the child process."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from rooflens.errors import InputError
from rooflens.measurement import noise
from rooflens.measurement.noise import (
    NoiseCase,
    NoiseFloor,
    ProcessRun,
    block_medians,
    build_model,
    child_command,
    coefficient_of_variation,
    half_width,
    is_disturbed,
    measure_once,
    noise_floor,
    run_child,
    spread,
)


def tiny() -> nn.Module:
    """A model small enough to time in a fraction of a second (importable by the child process)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def run(median: float, *, disturbed: bool = False, blocks: Sequence[float] = (1.0, 1.0)) -> ProcessRun:
    return ProcessRun(median_seconds=median, block_medians_seconds=tuple(blocks), iters=10, wall_seconds=1.0,
                      other_cpu_seconds=0.5 if disturbed else 0.0, disturbed=disturbed, load_before=0.1,
                      started_at=0.0)


# ---- statistics, by hand --------------------------------------------------------------------------------


def test_spread_cv_half_width_by_hand() -> None:
    medians = [10.0, 11.0, 9.0, 10.5, 9.5]
    # max / min - 1 = 11 / 9 - 1
    assert spread(medians) == pytest.approx(2 / 9)
    # mean 10; deviations 0, 1, -1, .5, -.5: sum of squares 2.5, / (n - 1) = 0.625; sd = sqrt(.625)
    assert coefficient_of_variation(medians) == pytest.approx(math.sqrt(0.625) / 10)
    # median 10; |m / 10 - 1| = 0, .1, .1, .05, .05 -> sorted 0, .05, .05, .1, .1; p90 at rank 3.6 = .1
    assert half_width(medians) == pytest.approx(0.1)
    # p50 at rank 2 = .05
    assert half_width(medians, q=50) == pytest.approx(0.05)
    assert spread([3.0]) == 0.0 and coefficient_of_variation([3.0]) == 0.0 and half_width([3.0]) == 0.0


def test_half_width_interpolates() -> None:
    # median 4; deviations .5, .25, 0, .25, 0 -> sorted 0, 0, .25, .25, .5; p90 at rank 0.9 * 4 = 3.6:
    # .25 + .6 * (.5 - .25)
    assert half_width([2.0, 3.0, 4.0, 5.0, 4.0]) == pytest.approx(0.25 + 0.6 * 0.25)


def test_statistics_reject_bad_values() -> None:
    for bad in ([], [1.0, 0.0], [1.0, math.nan], [-1.0]):
        with pytest.raises(InputError):
            spread(bad)


def test_block_medians() -> None:
    # 10 samples in 3 blocks of 4, 3, 3: medians of [1,2,3,4], [5,6,7], [8,9,10]
    assert block_medians([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], blocks=3) == (2.5, 6.0, 9.0)
    assert block_medians([5.0, 1.0], blocks=5) == (5.0, 1.0)  # fewer samples than blocks
    with pytest.raises(InputError):
        block_medians([], blocks=2)


def test_floor_statistics_and_dict() -> None:
    floor = NoiseFloor(
        case=NoiseCase(model="m:f", input_size=((1, 3),), threads=2),
        runs=(run(0.010, blocks=(1.0, 1.1)), run(0.011, disturbed=True, blocks=(2.0, 2.0)), run(0.009)),
        gap_seconds=5.0,
    )
    assert floor.median_seconds == 0.010
    assert floor.spread == pytest.approx(0.011 / 0.009 - 1)
    assert floor.within_spread == pytest.approx(0.1)  # the largest of 0.1, 0, 0
    assert floor.disturbed_count == 1
    d = floor.as_dict()
    assert d["threads"] == 2 and d["processes"] == 3 and len(d["runs"]) == 3
    assert ProcessRun.from_dict(d["runs"][1]) == floor.runs[1]


# ---- the disturbed flag -------------------------------------------------------------------------------------


def test_is_disturbed_rule() -> None:
    assert not is_disturbed(None, 10.0)  # unknown: not flagged
    assert not is_disturbed(1.9, 10.0)  # 19 % of one CPU
    assert is_disturbed(2.1, 10.0)  # 21 %
    assert not is_disturbed(0.02, 0.01)  # below two clock ticks, however short the interval
    assert is_disturbed(0.5, 10.0, share=0.04)


class FakeWatch:
    def __init__(self, other: float | None) -> None:
        self.other = other

    def other_seconds(self) -> float | None:
        return self.other


@pytest.mark.parametrize(("other", "expected"), [(0.0, False), (None, False), (100.0, True)])
def test_measure_once_flags_from_the_watch(other: float | None, expected: bool) -> None:
    result = measure_once(model=tiny().eval(), input_size=[(1, 3, 8, 8)], warmup=1, iters=6, min_seconds=0.01,
                          blocks=3, watch=lambda: FakeWatch(other))
    assert result.disturbed is expected
    assert result.iters >= 6 and len(result.block_medians_seconds) == 3
    assert result.median_seconds > 0


def test_noise_floor_retries_disturbed_processes() -> None:
    answers = iter([run(1.0, disturbed=True), run(1.1), run(1.2, disturbed=True), run(1.3, disturbed=True)])
    commands: list[Sequence[str]] = []
    slept: list[float] = []

    def runner(command: Sequence[str]) -> ProcessRun:
        commands.append(command)
        return next(answers)

    (floor,) = noise_floor(cases=[NoiseCase(model="m:f", input_size=((1, 3),))], processes=2, gap_seconds=7.0,
                           retries=1, runner=runner, sleep=slept.append)
    # process 1: disturbed, retried -> 1.1 kept (attempt 2); process 2: disturbed twice -> kept, flagged
    assert floor.medians_seconds == (1.1, 1.3)
    assert [r.attempt for r in floor.runs] == [2, 2]
    assert floor.retried == 2 and floor.disturbed_count == 1
    assert slept == [7.0, 7.0, 7.0]  # after the first disturbed attempt, between rounds, before the retry
    assert len(commands) == 4 and commands[0][1:3] == ["-m", "rooflens.measurement.noise"]


# ---- the child process -----------------------------------------------------------------------------------------


def test_build_model_specs() -> None:
    a = build_model("tests.test_noise:tiny", seed=3)
    b = build_model("tests.test_noise:tiny", seed=3)
    assert not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(InputError):
        build_model("resnet18")
    with pytest.raises(InputError):
        build_model("tests.test_noise:missing")


def test_child_process_prints_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    case = NoiseCase(model="tests.test_noise:tiny", input_size=((1, 3, 8, 8),), threads=1)
    command = child_command(case, python=sys.executable, warmup=1, iters=5, min_seconds=0.01, blocks=2)
    monkeypatch.chdir(noise.__file__.rsplit("/src/", 1)[0])  # the child imports tests.test_noise from here
    result = run_child(command, timeout=60)
    assert result.iters >= 5 and result.median_seconds > 0
    assert len(result.block_medians_seconds) == 2 and result.attempt == 1
