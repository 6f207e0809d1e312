"""A hypothesis state machine drives an executor through random faults.

Rules: submit, map, cancel, crash a worker, time a task out, close. Whatever
the sequence, every future ends (result, error or cancelled) and nothing is
left behind (the autouse leak check runs after the test).
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,  # pyright: ignore[reportUnknownVariableType]
)

from parallelkit import (
    ClosedError,
    Executor,
    ResultIterator,
    TaskTimeoutError,
    Timed,
    WorkerCrashedError,
)
from parallelkit.testing import crash_worker, hang

from .helpers import inc, sleep_then

ENDINGS = (WorkerCrashedError, TaskTimeoutError, concurrent.futures.CancelledError, ClosedError)


class ExecutorMachine(RuleBasedStateMachine):
    """Random sequences of operations on one process-backend executor."""

    def __init__(self) -> None:
        super().__init__()
        self.ex = Executor("process", 2)
        self.futures: list[tuple[concurrent.futures.Future[Any], object]] = []
        self.maps: list[tuple[ResultIterator[int], list[int]]] = []
        self.closed = False

    @precondition(lambda self: not self.closed)
    @rule(x=st.integers(-1000, 1000), delay=st.sampled_from([0.0, 0.0, 0.05]))
    def submit(self, x: int, delay: float) -> None:
        self.futures.append((self.ex.submit(sleep_then, delay, x), x))

    @precondition(lambda self: not self.closed)
    @rule(xs=st.lists(st.integers(-100, 100), max_size=20), chunksize=st.sampled_from([None, 1, 3]))
    def map(self, xs: list[int], chunksize: int | None) -> None:
        self.maps.append((self.ex.imap(inc, xs, chunksize), [x + 1 for x in xs]))

    @precondition(lambda self: not self.closed)
    @rule()
    def crash_a_worker(self) -> None:
        self.futures.append((self.ex.submit(crash_worker), WorkerCrashedError))

    @precondition(lambda self: not self.closed)
    @rule()
    def time_a_task_out(self) -> None:
        self.futures.append((self.ex.submit(Timed(hang, 0.2)), TaskTimeoutError))

    @precondition(lambda self: bool(self.futures))
    @rule(data=st.data(), kill=st.booleans())
    def cancel(self, data: st.DataObject, kill: bool) -> None:
        future, _ = data.draw(st.sampled_from(self.futures))
        self.ex.cancel(future, kill=kill)

    @precondition(lambda self: not self.closed)
    @rule(cancel_futures=st.booleans())
    def close(self, cancel_futures: bool) -> None:
        self.ex.shutdown(wait=False, cancel_futures=cancel_futures)
        self.closed = True

    @rule()
    def pause(self) -> None:
        time.sleep(0.02)

    @invariant()
    def executor_stays_usable_until_closed(self) -> None:
        if not self.closed:
            assert self.ex.submit(inc, 1).result(20) == 2

    def teardown(self) -> None:
        try:
            for future, expected in self.futures:
                try:
                    value = future.result(timeout=20)
                except ENDINGS:
                    continue
                if isinstance(expected, int):
                    assert value == expected
            for results, expected_values in self.maps:
                got: list[int] = []
                try:
                    got.extend(results)
                except ENDINGS:
                    continue
                assert got == expected_values
        finally:
            start = time.monotonic()
            self.ex.shutdown(wait=True)
            assert time.monotonic() - start < 30
            # Hypothesis keeps this machine in reference cycles of its own: let go
            # of the executor (and what holds it) now, so that its pool and the
            # named semaphores of its queues are freed here, not by the garbage
            # collector at some later moment (which may be inside multiprocessing's
            # resource tracker, whose lock does not allow it).
            del self.ex
            self.futures.clear()
            self.maps.clear()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_executor_survives_random_faults() -> None:
    run_state_machine_as_test(
        ExecutorMachine,
        settings=settings(
            max_examples=8,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
