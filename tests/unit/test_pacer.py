"""The replay's duty cycle: ``Pacer``'s arithmetic on an injected clock and sleep (no
real time passes), and the validation of ``PROJECTION_REBUILD_DUTY_CYCLE``."""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import ImproperlyConfigured

from projections.shadow import Pacer, check_duty_cycle
from shop.settings import env_fraction


class FakeTime:
    """A clock that moves only when the test works or the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def work(self, seconds: float) -> None:
        self.now += seconds


def paced(duty: float, batches: list[float]) -> FakeTime:
    """``batches`` of work (their seconds), the pacer pausing after each."""
    fake = FakeTime()
    pacer = Pacer(duty, sleep=fake.sleep, clock=fake.clock)
    for busy in batches:
        fake.work(busy)
        pacer.pause()
    return fake


def test_duty_1_never_sleeps():
    assert paced(1, [2.0, 3.0]).sleeps == []


def test_duty_half_sleeps_as_long_as_each_batch_took():
    assert paced(0.5, [2.0, 3.0, 0.25]).sleeps == [2.0, 3.0, 0.25]


def test_duty_quarter_sleeps_three_times_each_batch():
    fake = paced(0.25, [2.0, 3.0])

    assert fake.sleeps == [6.0, 9.0]
    assert 5.0 / (fake.now - 100.0) == 0.25  # working a quarter of the wall time


def test_the_sleep_is_not_counted_as_work_and_restart_forgets_the_time_before():
    fake = FakeTime()
    pacer = Pacer(0.5, sleep=fake.sleep, clock=fake.clock)
    fake.work(10.0)  # e.g. preparing the shadow: not a batch
    pacer.restart()
    fake.work(1.0)

    assert pacer.pause() == 1.0
    fake.work(2.0)
    assert pacer.pause() == 2.0
    assert fake.sleeps == [1.0, 2.0]
    assert (pacer.pauses, pacer.slept) == (2, 3.0)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.01, 2, math.nan, math.inf, "0.5", None, True])
def test_a_duty_cycle_outside_0_to_1_is_refused(bad):
    with pytest.raises(ValueError, match="greater than 0 and at most 1"):
        check_duty_cycle(bad)
    with pytest.raises(ValueError):
        Pacer(bad)


@pytest.mark.parametrize("text, value", [(None, 0.5), ("", 0.5), (" ", 0.5), ("1", 1.0),
                                         ("0.25", 0.25), ("1e-3", 0.001)])
def test_the_setting_reads_a_fraction_from_the_environment(monkeypatch, text, value):
    if text is None:
        monkeypatch.delenv("PROJECTION_REBUILD_DUTY_CYCLE", raising=False)
    else:
        monkeypatch.setenv("PROJECTION_REBUILD_DUTY_CYCLE", text)

    assert env_fraction("PROJECTION_REBUILD_DUTY_CYCLE", 0.5) == value


@pytest.mark.parametrize("text", ["0", "-0.5", "1.5", "nan", "inf", "half", "50%"])
def test_the_setting_refuses_anything_else_naming_itself(monkeypatch, text):
    monkeypatch.setenv("PROJECTION_REBUILD_DUTY_CYCLE", text)

    with pytest.raises(ImproperlyConfigured) as raised:
        env_fraction("PROJECTION_REBUILD_DUTY_CYCLE", 0.5)

    assert str(raised.value) == (
        "PROJECTION_REBUILD_DUTY_CYCLE must be a number greater than 0 and at most 1, "
        f"not {text!r}."
    )
