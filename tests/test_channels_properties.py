"""Channels against simple models, for any input hypothesis can think of."""

from __future__ import annotations

import array
import gc
from collections.abc import Iterator
from ctypes import Structure, c_double, c_int16

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallelkit import Array, Queue

KINDS = ["thread", "process"]


@pytest.fixture(autouse=True)
def _collect_channels() -> Iterator[None]:
    """Release channels caught in reference cycles before the leak check runs."""
    yield
    gc.collect(0)


class Pair(Structure):
    _fields_ = (("a", c_int16), ("b", c_double))


ITEMS = st.lists(
    st.one_of(st.integers(), st.text(max_size=20), st.binary(max_size=64), st.none()),
    max_size=40,
)
FINITE = st.floats(allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(items=ITEMS)
def test_property_queue_gives_back_what_one_producer_put_in_order(
    kind: str, items: list[object]
) -> None:
    q = Queue[object](backend=kind)
    half = len(items) // 2
    for item in items[:half]:
        q.put(item)
    q.put_many(items[half:])
    q.close()
    assert list(q) == items


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_property_int_array_round_trips_any_list(kind: str, values: list[int]) -> None:
    arr = Array("q", values, backend=kind)
    assert arr[:] == values
    assert list(arr) == values
    copy = array.array("q", [0] * len(values))
    assert arr.copy_into(copy) == len(values)
    assert copy.tolist() == values


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(values=st.lists(FINITE, max_size=50))
def test_property_float_array_round_trips_through_a_bulk_copy(
    kind: str, values: list[float]
) -> None:
    arr = Array("d", len(values), backend=kind)
    arr.copy_from(array.array("d", values))
    assert arr[:] == values


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, deadline=None)
@given(data=st.binary(max_size=64).filter(lambda b: b"\x00" not in b))
def test_property_char_array_round_trips_any_bytes(kind: str, data: bytes) -> None:
    arr = Array("c", data, backend=kind)
    assert arr.raw == data
    assert arr.value == data
    assert arr[:] == data


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(min_value=-(2**15), max_value=2**15 - 1), FINITE), max_size=20
    )
)
def test_property_structure_array_round_trips_any_list(
    kind: str, pairs: list[tuple[int, float]]
) -> None:
    arr = Array(Pair, pairs, backend=kind)
    assert [(p.a, p.b) for p in arr] == pairs
