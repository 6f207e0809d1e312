"""Value and Array as multiprocessing's: assignment, live Structure elements, lock= arguments."""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Callable, Iterator
from ctypes import Structure, c_bool, c_double
from typing import Any

import pytest

import parallelkit
from parallelkit import Array, Condition, Lock, ParallelkitError, RLock, Value

from .helpers import FORK_WARNING, START_METHODS

pytestmark = pytest.mark.usefixtures("collect_channels")


def untyped(value: object) -> Any:
    """Hide a deliberately wrong argument from the type checkers (the test is about run time)."""
    return value


def where_params() -> list[Any]:
    """The thread backend, then the process backend under every start method."""
    params: list[Any] = [pytest.param(("thread", None), id="thread")]
    for method in START_METHODS:
        marks = [pytest.mark.filterwarnings(FORK_WARNING)] if method == "fork" else []
        params.append(pytest.param(("process", method), id=f"process-{method}", marks=marks))
    return params


@pytest.fixture(params=where_params())
def where(request: pytest.FixtureRequest) -> Iterator[str]:
    """A backend (and, for processes, a start method) configured as the default."""
    backend, method = request.param
    with parallelkit.config(backend=backend, start_method=method):
        yield backend


class Point(Structure):
    _fields_ = (("x", c_double), ("y", c_double))


# The tutorial's own Value/Array program, with only its import lines changed, runs in
# tests/test_seed_programs.py.


# -- assignment from another worker, under a Condition --------------------------------------


def announce(v: Value[int], cond: Condition, k: int) -> None:
    with cond:
        v.value = k
        cond.notify_all()


def test_a_child_sets_a_value_while_the_parent_waits_on_a_condition(where: str) -> None:
    cond = Condition()
    v = Value("i", 0)
    with cond:
        job = parallelkit.spawn(announce, v, cond, 7)
        assert cond.wait_for(lambda: v.value == 7, timeout=20)
    job.join(20)
    assert job.exitcode == 0


def test_a_value_sharing_the_conditions_rlock_is_set_and_waited_for(where: str) -> None:
    lock = RLock()
    cond = Condition(lock)
    v = Value("i", 0, lock=lock)
    with cond:
        job = parallelkit.spawn(announce, v, cond, 3)
        assert cond.wait_for(lambda: v.value == 3, timeout=20)
    job.join(20)
    assert job.exitcode == 0


# -- assignment ------------------------------------------------------------------------------


def test_augmented_assignment_of_value_reads_then_stores(backend: str) -> None:
    n = Value("i", 7)
    n.value **= 2
    n.value -= 9
    assert n.value == 40


def test_value_assignment_coerces_like_ctypes(backend: str) -> None:
    n = Value("i", 0)
    with pytest.raises(TypeError):
        n.value = untyped("x")
    with pytest.raises(TypeError):
        n.value = untyped(1.5)
    assert n.value == 0


def test_lock_false_value_is_assignable(backend: str) -> None:
    b = Value(c_bool, False, lock=False)
    b.value = True
    assert b.value is True


def test_structure_value_is_assigned_a_structure_or_a_tuple(backend: str) -> None:
    p = Value(Point, 1.0, 2.0)
    p.value = Point(3.0, 4.0)
    assert (p.value.x, p.value.y) == (3.0, 4.0)
    p.value = untyped((5.0, 6.0))
    assert (p.value.x, p.value.y) == (5.0, 6.0)


def set_value(v: Value[int], ints: Array[int], chars: Array[bytes]) -> None:
    v.value = 1


def set_element(v: Value[int], ints: Array[int], chars: Array[bytes]) -> None:
    ints[0] = 1


def set_slice(v: Value[int], ints: Array[int], chars: Array[bytes]) -> None:
    ints[0:2] = [1, 1]


def set_chars_value(v: Value[int], ints: Array[int], chars: Array[bytes]) -> None:
    chars.value = b"ab"


def set_chars_raw(v: Value[int], ints: Array[int], chars: Array[bytes]) -> None:
    chars.raw = b"abc"


@pytest.mark.parametrize(
    "assign", [set_value, set_element, set_slice, set_chars_value, set_chars_raw]
)
def test_assignment_waits_for_the_lock_held_elsewhere(
    backend: str, assign: Callable[[Value[int], Array[int], Array[bytes]], None]
) -> None:
    lock = Lock()
    v = Value("i", 0, lock=lock)
    ints = Array("i", 2, lock=lock)
    chars = Array("c", 3, lock=lock)
    with lock:
        setter = threading.Thread(target=assign, args=(v, ints, chars))
        setter.start()
        setter.join(0.2)
        blocked = setter.is_alive()
    setter.join(10)
    assert blocked


def test_setting_while_holding_the_default_lock_completes(backend: str) -> None:
    v = Value("i", 0)
    s = Array("c", b"abc")
    with v.get_lock(), s.get_lock():  # RLocks, as multiprocessing's default
        v.value = v.value + 1
        s.value = s.value.upper()
    assert (v.value, s.value) == (1, b"ABC")


def test_array_element_augmented_assignment_reads_then_stores(backend: str) -> None:
    arr = Array("i", range(5))
    arr[1] += 5
    arr[-1] *= 3
    assert arr[:] == [0, 6, 2, 3, 12]


def test_char_array_value_assignment_is_multiprocessings(backend: str) -> None:
    s = Array("c", b"hello world")
    s.value = s.value.upper()
    assert s.value == b"HELLO WORLD"
    s.value = b"bye"  # shorter: a NUL ends it, the rest stays
    assert (s.value, s.raw) == (b"bye", b"bye\x00O WORLD")


def test_char_array_raw_assignment_replaces_the_bytes(backend: str) -> None:
    s = Array("c", 5)
    s.raw = b"ab\x00cd"
    assert (s.raw, s.value) == (b"ab\x00cd", b"ab")


def test_char_array_value_longer_than_the_array_is_refused(backend: str) -> None:
    s = Array("c", b"abc")
    with pytest.raises(ValueError, match="too long"):
        s.value = b"abcde"
    assert s.value == b"abc"


def test_only_char_arrays_take_value_assignment(backend: str) -> None:
    with pytest.raises(TypeError, match="char array"):
        untyped(Array("i", 2)).value = b"x"


# -- Structure elements ----------------------------------------------------------------------


def test_a_structure_element_writes_through_to_the_array(backend: str) -> None:
    a = Array(Point, [(1.0, 2.0), (3.0, 4.0)])
    a[1].x = 30.0
    a[1].y **= 2
    assert [(p.x, p.y) for p in a] == [(1.0, 2.0), (30.0, 16.0)]


def test_iterating_gives_the_live_structure_elements(backend: str) -> None:
    a = Array(Point, [(1.875, -6.25), (-5.75, 2.0)])
    for point in a:
        point.x **= 2
        point.y **= 2
    assert [(p.x, p.y) for p in a] == [(3.515625, 39.0625), (33.0625, 4.0)]


def test_sliced_structure_elements_are_live(backend: str) -> None:
    a = Array(Point, 3)
    a[1:3][0].x = 5.0
    assert a[1].x == 5.0


def test_a_structure_element_outlives_its_closed_array(backend: str) -> None:
    a = Array(Point, [(1.0, 2.0)])
    element = a[0]
    a.close()
    del a
    gc.collect()
    element.x = 7.0  # the element keeps the memory mapped: no use after free
    assert (element.x, element.y) == (7.0, 2.0)


# -- lock= -------------------------------------------------------------------------------------


def test_lock_none_gives_each_object_an_rlock_of_its_own(backend: str) -> None:
    v = Value("i", 0, lock=None)
    a = Array("i", 2, lock=None)
    assert isinstance(v.get_lock(), RLock) and isinstance(a.get_lock(), RLock)
    assert v.get_lock() is not a.get_lock()


def make_value(lock: Any) -> Any:
    return Value("i", 0, lock=lock)


def make_array(lock: Any) -> Any:
    return Array("i", 2, lock=lock)


@pytest.mark.parametrize("make", [make_value, make_array])
def test_lock_false_objects_have_no_get_lock_or_get_obj(
    backend: str, make: Callable[[Any], Any]
) -> None:
    plain = make(False)
    assert (hasattr(plain, "get_lock"), hasattr(plain, "get_obj")) == (False, False)


@pytest.mark.parametrize("make", [make_value, make_array])
def test_locked_objects_have_get_lock_and_get_obj(backend: str, make: Callable[[Any], Any]) -> None:
    guarded = make(True)
    assert (hasattr(guarded, "get_lock"), hasattr(guarded, "get_obj")) == (True, True)


def test_get_lock_of_a_lock_false_value_says_why_it_is_missing(backend: str) -> None:
    plain = Value("i", 0, lock=False)
    with pytest.raises(AttributeError, match=r"lock=False, so it has no get_lock\(\)"):
        plain.get_lock()


NOT_LOCKS: list[Any] = ["yes", 0.5, object(), threading.Lock()]


@pytest.mark.parametrize("make", [make_value, make_array])
@pytest.mark.parametrize("bad", NOT_LOCKS, ids=lambda bad: type(bad).__name__)
def test_a_lock_argument_that_is_not_a_lock_fails_at_construction_naming_it(
    backend: str, make: Callable[[Any], Any], bad: object
) -> None:
    with pytest.raises(TypeError, match=re.escape(f"got {bad!r}")):
        make(bad)


def test_a_bad_lock_argument_is_caught_as_multiprocessings_attribute_error(
    backend: str,
) -> None:
    with pytest.raises(AttributeError) as caught:
        Value("i", 0, lock=untyped("yes"))
    assert type(caught.value) is parallelkit.NotALockError
    assert issubclass(parallelkit.NotALockError, ParallelkitError)
