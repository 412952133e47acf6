from __future__ import annotations

from streamrec.publish.producer import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_spaces_events_at_the_target_rate_without_drift() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, sleep=clock.sleep)
    for _ in range(101):
        pacer.wait()
        clock.now += 0.001  # work done per event
    assert abs(clock.now - 100.0 - 1.001) < 1e-9  # 101 events at 100/s: the last is due at t + 1 s


def test_pacer_does_not_sleep_when_behind_or_unlimited() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 5.0
    pacer.wait()
    assert clock.slept == []
    Pacer(0.0, clock=clock, sleep=clock.sleep).wait()
    assert clock.slept == []
