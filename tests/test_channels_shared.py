"""Value and Array on every backend: multiprocessing's types, safe writes, bulk copies, numpy."""

from __future__ import annotations

import array
import gc
import multiprocessing
import pickle
from ctypes import Structure, c_bool, c_char, c_char_p, c_double, c_int, c_uint8
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

import parallelkit
from parallelkit import Array, ClosedChannelError, Lock, RLock, Value

from .helpers import loop_size

pytestmark = pytest.mark.usefixtures("collect_channels")


def untyped(value: object) -> Any:
    """Hide a deliberately wrong argument from the type checkers (the test is about run time)."""
    return value


class Point(Structure):
    _fields_ = (("x", c_double), ("y", c_double))


class Line(Structure):
    _fields_ = (("start", Point), ("end", Point), ("tags", c_int * 2))


def add_many(counter: Value[int], times: int) -> None:
    for _ in range(times):
        counter.add(1)


def update_many(counter: Value[int], times: int) -> None:
    for _ in range(times):
        counter.update(lambda v: v + 1)


def increment_with_lock(counter: Value[int], times: int) -> None:
    for _ in range(times):
        with counter.locked() as cell:
            cell.value += 1


def fill(arr: Array[int], value: int) -> None:
    with arr.locked() as items:
        for i in range(len(items)):
            items[i] = value


def move_line(line: Value[Line]) -> tuple[float, int]:
    with line.locked() as cell:
        cell.value.end.x += 10
        cell.value.tags[1] = 7
    return line.value.end.x, line.value.tags[1]


# -- Value ---------------------------------------------------------------------------------


KINDS: list[tuple[Any, object]] = [
    ("i", 7),
    ("q", -(2**40)),
    ("d", 1.5),
    ("f", 0.25),
    ("c", b"x"),
    ("u", "é"),
    ("?", True),
    (int, 2**62),
    (float, 2.5),
    (bool, True),
    (c_int, 3),
    (c_bool, False),
    (c_uint8, 255),
    (c_char, b"z"),
]


def test_value_holds_every_kind_of_type(backend: str) -> None:
    for kind, initial in KINDS:
        assert Value(kind, initial).value == initial, kind
        assert Value(kind).value in (0, 0.0, False, b"\x00", "\x00"), kind


def test_value_coerces_like_multiprocessing(backend: str) -> None:
    with pytest.raises(TypeError):
        Value("i", untyped(1.5))
    with pytest.raises(TypeError):
        Value("d", untyped("x"))
    wrapped = Value(c_uint8, 255)
    assert wrapped.add(1) == 0  # C arithmetic, as multiprocessing's Value


def test_value_refuses_unknown_types_and_pointers(backend: str) -> None:
    with pytest.raises(TypeError, match="unknown typecode"):
        Value(untyped("z"))
    with pytest.raises(TypeError, match="pointer"):
        Value(c_char_p)
    with pytest.raises(TypeError, match="takes a typecode"):
        Value(untyped(list))


def test_assigning_value_stores_it_as_multiprocessing_does(backend: str) -> None:
    v = Value("i", 1)
    v.value = 6
    v.value **= 2
    assert v.value == 36


def test_set_add_update_and_compare_and_set(backend: str) -> None:
    v = Value("i", 1)
    v.set(5)
    assert v.add(2) == 7
    assert v.add(-10) == -3
    assert v.update(lambda x: x * x) == 9
    assert not v.compare_and_set(8, 0)
    assert v.compare_and_set(9, 0)
    assert v.value == 0
    d = Value("d", 0.5)
    assert d.add(0.25) == 0.75


def test_locked_groups_reads_and_writes_and_retires_the_cell(backend: str) -> None:
    v = Value("i", 1)
    with v.locked() as cell:
        cell.value = cell.value * 10 + 1
    assert v.value == 11
    with pytest.raises(ClosedChannelError, match="after its 'with' block"):
        cell.value = 0


def test_structure_values_are_copies_outside_the_lock(backend: str) -> None:
    p = Value(Point, 1.0, 2.0)
    outside = p.value
    assert isinstance(outside, Point)
    assert (outside.x, outside.y) == (1.0, 2.0)
    with pytest.raises(AttributeError, match="copy read outside the lock"):
        outside.x = 5.0
    p.set(Point(3.0, 4.0))
    p.set(untyped((5.0, 6.0)))  # a tuple of the fields works too
    assert (p.value.x, p.value.y) == (5.0, 6.0)
    moved = p.update(lambda q: Point(q.y, q.x))
    assert (moved.x, moved.y) == (6.0, 5.0)
    assert p.compare_and_set(Point(6.0, 5.0), Point(0.0, 0.0))
    assert pickle.loads(pickle.dumps(p.value)).x == 0.0


def test_nested_structure_changes_in_place_under_the_lock(backend: str) -> None:
    line = Value(Line)
    assert parallelkit.spawn(move_line, line).result(timeout=30) == (10.0, 7)
    assert line.value.end.x == 10.0


def test_lock_false_allows_reads_and_set_but_not_read_modify_write(backend: str) -> None:
    flag = Value(c_bool, False, lock=False)
    flag.set(True)
    assert flag.value is True
    with pytest.raises(TypeError, match="lock=False"):
        flag.update(lambda b: not b)
    with pytest.raises(AttributeError, match="lock=False"):
        flag.get_lock()


def test_a_shared_lock_guards_several_objects(backend: str) -> None:
    lock = Lock()
    a = Value("i", 0, lock=lock)
    b = Array("i", 3, lock=lock)
    assert a.get_lock() is lock and b.get_lock() is lock
    with lock:
        assert not lock.acquire(False)
    rlock = RLock()
    c = Value("i", 0, lock=rlock)
    with c.get_lock():
        assert c.add(1) == 1  # recursive: the holder may call add()


def test_a_lock_of_the_other_family_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot use a lock"):
        Value("i", 0, lock=Lock(backend="thread"), backend="process")
    with pytest.raises(TypeError, match="lock must be"):
        Value("i", 0, lock=untyped("yes"), backend="thread")


@pytest.mark.parametrize("operation", [add_many, update_many, increment_with_lock])
def test_concurrent_increments_from_several_workers_end_at_the_exact_total(
    backend: str, operation: Any
) -> None:
    counter = Value("i", 0)
    n = loop_size(backend, 500)
    with parallelkit.Executor(workers=2) as ex:
        list(ex.map(operation, [counter] * 4, [n] * 4))
    assert counter.value == 4 * n


def test_get_obj_is_the_raw_ctypes_object(backend: str) -> None:
    v = Value("i", 3)
    raw = v.get_obj()
    assert isinstance(raw, c_int)
    assert raw.value == 3


def test_closed_value_refuses_use_but_views_keep_their_memory(backend: str) -> None:
    v = Value("i", 3)
    raw = v.get_obj()
    with v:
        pass
    assert v.closed
    with pytest.raises(ClosedChannelError, match="closed"):
        _ = v.value
    del v
    gc.collect()
    assert raw.value == 3


# -- Array ---------------------------------------------------------------------------------


def test_array_from_size_or_initializer(backend: str) -> None:
    assert Array("i", 3)[:] == [0, 0, 0]
    assert Array("i", range(5))[:] == [0, 1, 2, 3, 4]
    assert Array("d", [0.5, 1.5])[:] == [0.5, 1.5]
    assert Array(bool, [True, False])[:] == [True, False]
    assert len(Array("q", 0)) == 0
    with pytest.raises(ValueError, match="size"):
        Array("i", -1)
    with pytest.raises(TypeError):
        Array("i", untyped(["x"]))


def test_indexing_and_slicing_like_multiprocessing(backend: str) -> None:
    arr = Array("i", range(5))
    arr[0] = 10
    arr[1:3] = [11, 12]
    assert arr[0] == 10 and arr[-1] == 4
    assert arr[::2] == [10, 12, 4]
    with pytest.raises(IndexError):
        arr[5]


def test_char_arrays_have_value_and_raw(backend: str) -> None:
    s = Array("c", b"hello world")
    assert s.value == b"hello world"
    assert s.raw == b"hello world"
    assert s[:5] == b"hello"
    s[0:5] = b"HELLO"
    with s.locked() as chars:
        chars.value = b"bye"
    assert s.value == b"bye"
    assert s.raw == b"bye\x00O world"
    with s.locked() as chars:
        chars.raw = b"x" * 11
    assert s.value == b"x" * 11
    with pytest.raises(TypeError, match="char array"):
        _ = untyped(Array("i", 2)).value


def test_iteration_is_a_snapshot_under_one_lock(backend: str) -> None:
    arr = Array("i", range(4))
    seen: list[int] = []
    for x in arr:
        arr[0] = 99  # does not change the snapshot being iterated
        seen.append(x)
    assert seen == [0, 1, 2, 3]
    assert list(Array("c", b"ab")) == [b"a", b"b"]


def test_structure_elements_change_in_place_under_the_lock(backend: str) -> None:
    a = Array(Point, [(1.875, -6.25), (-5.75, 2.0)])
    assert [(p.x, p.y) for p in a[:]] == [(1.875, -6.25), (-5.75, 2.0)]
    with a.locked() as points:
        for point in points:
            point.x **= 2
    assert [p.x for p in a] == [3.515625, 33.0625]
    a[1] = Point(0.0, 0.0)
    assert (a[1].x, a[1].y) == (0.0, 0.0)


def test_a_worker_fills_an_array_under_its_lock(backend: str) -> None:
    arr = Array("i", 100)
    parallelkit.spawn(fill, arr, 7).result(timeout=30)
    assert arr[:] == [7] * 100


def test_copy_from_and_copy_into_move_whole_buffers(backend: str) -> None:
    arr = Array("d", 6)
    arr.copy_from(array.array("d", [1.0, 2.0, 3.0]), start=2)
    assert arr[:] == [0.0, 0.0, 1.0, 2.0, 3.0, 0.0]
    arr.copy_from(bytes(8), start=2)  # raw bytes of whole elements
    assert arr[2] == 0.0
    out = array.array("d", [9.0] * 3)
    assert arr.copy_into(out, start=3) == 3
    assert out.tolist() == [2.0, 3.0, 0.0]
    assert arr.copy_into(bytearray(16), start=5) == 1


def test_copy_from_checks_the_element_type_and_the_size(backend: str) -> None:
    arr = Array("d", 2)
    with pytest.raises(TypeError, match="format"):
        arr.copy_from(array.array("i", [1, 2]))
    with pytest.raises(ValueError, match="do not fit"):
        arr.copy_from(array.array("d", [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="whole number"):
        arr.copy_from(b"12345")
    with pytest.raises(TypeError, match="writable"):
        arr.copy_into(b"\x00" * 16)
    ints = Array("q", 2)
    ints.copy_from(array.array("q", [5, 6]))
    assert ints[:] == [5, 6]


def test_numpy_view_shares_the_memory(backend: str) -> None:
    np = pytest.importorskip("numpy")
    arr = Array("i", range(4))
    view = arr.numpy()
    view[0] = 40
    assert arr[0] == 40
    arr[1] = 41
    assert view[1] == 41
    points = Array(Point, [(1.0, 2.0)]).numpy()
    assert points["y"][0] == 2.0
    assert np.shares_memory(view, arr.numpy())


def test_numpy_view_outlives_the_array_that_made_it(backend: str) -> None:
    pytest.importorskip("numpy")
    arr = Array("d", [1.5] * 1000)
    view = arr.numpy()
    arr.close()
    with pytest.raises(ClosedChannelError):
        arr.numpy()
    del arr
    gc.collect()
    assert float(view.sum()) == 1500.0  # still mapped: no use-after-free


def test_numpy_refuses_char_arrays(backend: str) -> None:
    with pytest.raises(TypeError, match="char array"):
        untyped(Array("c", 3)).numpy()


def test_repr_shows_type_contents_and_backend(backend: str) -> None:
    assert repr(Value("i", 7)) == f"<parallelkit.Value 'i' 7 backend={backend!r}>"
    assert repr(Array("i", 2)) == f"<parallelkit.Array 'i' [0, 0] backend={backend!r}>"
    assert "2 x Point" in repr(Array(Point, 2))


def test_shared_memory_objects_unpickle_over_the_same_memory(backend: str) -> None:
    arr = Array("i", range(3))
    again = pickle.loads(pickle.dumps(arr))
    again[0] = 9
    assert arr[0] == 9


def test_value_survives_every_start_method() -> None:
    counter = Value("i", 0, backend="process")
    for method in multiprocessing.get_all_start_methods():
        if method == "fork":
            continue  # covered by the executors' fork tests; a raw fork here warns under 3.12+
        context: Any = multiprocessing.get_context(method)  # typeshed's BaseContext lacks Process
        proc: BaseProcess = context.Process(target=add_many, args=(counter, 5))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
    assert counter.value == 5 * (len(multiprocessing.get_all_start_methods()) - 1)
