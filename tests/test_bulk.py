"""The shared-memory wire (``parallelkit._bulk``) on its own, in one process.

What crosses between processes is covered by tests/test_bulk_executor.py and
tests/test_bulk_channels.py; here: what goes out of band, what comes back as a
view or a copy, when a segment is reused, cached, released and unlinked.
"""

from __future__ import annotations

import gc
import os
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallelkit import ClosedChannelError, _bulk
from parallelkit._channels._sharing import new_token
from parallelkit._serialize import dumps as plain_dumps

np = pytest.importorskip("numpy")

KB = 1 << 10
MB = 1 << 20
THRESHOLD = 64 * KB


def _names(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))


@pytest.fixture
def prefix() -> Iterator[str]:
    stem = new_token() + "t"
    yield stem
    gc.collect()
    _bulk.unlink_prefix(stem)


def send(obj: object, outbox: _bulk.Outbox, threshold: int | None = THRESHOLD) -> bytes:
    return _bulk.dumps(obj, threshold, outbox, plain=plain_dumps)


def test_small_objects_stay_plain_pickles(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    message = send({"a": [1, 2, 3], "b": b"x" * 100, "c": np.zeros(10)}, outbox)
    assert not _bulk.is_bulk(message)
    assert message[:1] == b"\x80"
    assert _names(prefix) == []


def test_no_threshold_means_the_plain_serializer(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    big = np.ones(MB)
    assert send(big, outbox, None) == plain_dumps(big)
    assert _names(prefix) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"y" * MB,
        lambda: bytearray(b"a" * MB),
        lambda: [1, ("nested", {"k": b"z" * MB})],
    ],
    ids=["bytes", "bytearray", "bytes-three-levels-down"],
)
def test_big_bytes_go_out_of_band_and_come_back_as_copies(prefix: str, make: Any) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    value = make()
    message = send(value, outbox)
    assert _bulk.is_bulk(message)
    assert len(message) < 1000
    assert _bulk.loads(message) == value
    assert _names(prefix) == []  # a ONCE segment is unlinked as it is mapped


def test_numpy_arrays_come_back_as_writable_views_on_the_segment(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.RECYCLE)
    array = np.arange(MB // 8, dtype=np.float64).reshape(256, -1)
    got = _bulk.loads(send(array, outbox))
    assert np.array_equal(got, array)
    assert got.flags.writeable
    assert not isinstance(got.base, (bytes, bytearray))


def test_memoryviews_keep_format_and_shape(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    source = memoryview(np.arange(MB // 4, dtype=np.int32).reshape(512, -1))
    got = _bulk.loads(send(source, outbox))
    assert isinstance(got, memoryview)
    assert (got.format, got.shape) == (source.format, source.shape)
    assert got.tobytes() == source.tobytes()
    strided = memoryview(np.arange(MB, dtype=np.uint8))[::2]
    assert _bulk.loads(send(strided, outbox)).tobytes() == strided.tobytes()


def test_what_only_cloudpickle_can_send_also_goes_out_of_band(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    array = np.full(MB, 3, dtype=np.uint8)
    message = send(lambda: int(array.sum()), outbox)
    assert _bulk.is_bulk(message)
    assert _bulk.loads(message)() == 3 * MB


def test_a_recycled_segment_is_reused_once_its_receiver_lets_go(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.RECYCLE)
    first = send(np.ones(MB), outbox)
    kept = _bulk.loads(first)
    second = send(np.ones(MB), outbox)
    assert _bulk.segment_names(first) != _bulk.segment_names(second)  # the first is in use
    del kept
    gc.collect()
    third = send(np.ones(MB), outbox)
    assert _bulk.segment_names(third) == _bulk.segment_names(first)
    for _ in range(50):
        _bulk.loads(send(b"q" * MB, outbox))
    assert len(_names(prefix)) == 3  # two of 8 MB, one that fits 1 MB items
    outbox.close()


def test_a_received_array_is_not_overwritten_by_the_next_message(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.RECYCLE)
    kept = [_bulk.loads(send(np.full(MB, i, dtype=np.uint8), outbox)) for i in range(5)]
    assert [int(k[0]) for k in kept] == [0, 1, 2, 3, 4]


def test_closing_an_outbox_unlinks_idle_segments_and_leaves_busy_ones(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.RECYCLE)
    _bulk.loads(send(np.ones(MB), outbox))  # received and dropped: idle
    unread = send(np.full(2 * MB, 7.0), outbox)  # on its way, too big for the idle one
    assert len(_names(prefix)) == 2
    outbox.close()
    assert len(_names(prefix)) == 1
    assert float(_bulk.loads(unread)[0]) == 7.0


def test_a_message_whose_segment_is_gone_raises_closed_channel_error(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    message = send(np.ones(MB), outbox)
    assert _bulk.unlink_prefix(prefix) == 1
    with pytest.raises(ClosedChannelError, match="is gone: its sender released it"):
        _bulk.loads(message)


def test_parcel_unlinks_its_segments_when_collected(prefix: str) -> None:
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    placed: list[_bulk.Placement] = []
    message = _bulk.dumps(np.ones(MB), THRESHOLD, outbox, plain=plain_dumps, placed=placed)
    parcel = _bulk.parcel(message, placed)
    assert isinstance(parcel, _bulk.Parcel)
    assert _bulk.message_of(parcel) == message
    assert len(_names(prefix)) == 1
    del parcel
    gc.collect()
    assert _names(prefix) == []
    assert _bulk.parcel(b"plain", []) == b"plain"


def test_the_cache_places_a_read_only_buffer_once(prefix: str) -> None:
    cache = _bulk.Cache(_bulk.Outbox(prefix, _bulk.SHARED), THRESHOLD)
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    frozen = np.arange(MB, dtype=np.uint8)
    frozen.setflags(write=False)
    messages = [
        _bulk.dumps((i, frozen), THRESHOLD, outbox, plain=plain_dumps, cache=cache.lookup)
        for i in range(3)
    ]
    assert len({tuple(_bulk.segment_names(m)) for m in messages}) == 1
    got = _bulk.loads(messages[0])[1]
    assert not got.flags.writeable
    assert np.array_equal(got, frozen)
    del frozen
    gc.collect()
    assert _names(prefix) == []  # the entry went with its object
    assert int(got[-1]) == 255  # the receiver's mapping outlives the name
    cache.close()


def test_a_writable_buffer_is_reused_while_unchanged_and_placed_again_when_changed(
    prefix: str,
) -> None:
    cache = _bulk.Cache(_bulk.Outbox(prefix, _bulk.SHARED), THRESHOLD)
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    live = np.zeros(MB, dtype=np.uint8)

    def send_live() -> bytes | _bulk.Parcel:
        placed: list[_bulk.Placement] = []
        message = _bulk.dumps(
            live, THRESHOLD, outbox, plain=plain_dumps, cache=cache.lookup, placed=placed
        )
        return _bulk.parcel(message, placed)  # holds the cached segment, as a chunk does

    first, again = send_live(), send_live()
    names = [_bulk.segment_names(_bulk.message_of(p)) for p in (first, again)]
    assert names[0] == names[1]
    live[-1] = 1
    changed = send_live()
    assert _bulk.segment_names(_bulk.message_of(changed)) != names[0]
    assert int(_bulk.loads(_bulk.message_of(again))[-1]) == 0
    got = _bulk.loads(_bulk.message_of(changed))
    assert int(got[-1]) == 1
    assert got.flags.writeable
    got[:] = 9  # copy-on-write: the placed bytes stay as they were
    assert int(_bulk.loads(_bulk.message_of(changed))[0]) == 0
    del first, again, changed, got
    cache.close()


def test_a_cached_segment_outlives_its_object_while_a_message_refers_to_it(prefix: str) -> None:
    cache = _bulk.Cache(_bulk.Outbox(prefix, _bulk.SHARED), THRESHOLD)
    outbox = _bulk.Outbox(prefix, _bulk.ONCE)
    placed: list[_bulk.Placement] = []
    message = _bulk.dumps(
        np.full(MB, 4, dtype=np.uint8),  # collected as soon as it is sent
        THRESHOLD,
        outbox,
        plain=plain_dumps,
        cache=cache.lookup,
        placed=placed,
    )
    parcel = _bulk.parcel(message, placed)
    del placed
    gc.collect()
    assert int(_bulk.loads(_bulk.message_of(parcel))[0]) == 4
    del parcel
    gc.collect()
    assert _names(prefix) == []
    cache.close()


def test_closing_the_cache_unlinks_every_entry(prefix: str) -> None:
    cache = _bulk.Cache(_bulk.Outbox(prefix, _bulk.SHARED), THRESHOLD)
    held = [np.full(MB, i, dtype=np.uint8) for i in range(3)]
    for array in held:
        array.setflags(write=False)
        assert cache.lookup(memoryview(array)) is not None
    assert len(_names(prefix)) == 3
    cache.close()
    assert _names(prefix) == []
    assert cache.lookup(memoryview(held[0])) is None


def test_the_cache_does_not_keep_bytes_alive(prefix: str) -> None:
    cache = _bulk.Cache(_bulk.Outbox(prefix, _bulk.SHARED), THRESHOLD)
    assert cache.lookup(memoryview(b"b" * MB)) is None
    assert _names(prefix) == []


def test_plain_pickles_load_as_they_are() -> None:
    assert _bulk.loads(pickle.dumps({"x": 1})) == {"x": 1}
    assert _bulk.segment_names(pickle.dumps(1)) == []


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * THRESHOLD), min_size=1, max_size=4),
    kind=st.sampled_from(["bytes", "bytearray", "numpy", "memoryview"]),
    mode=st.sampled_from([_bulk.ONCE, _bulk.RECYCLE]),
)
def test_any_mix_of_buffers_around_the_threshold_round_trips(
    sizes: list[int], kind: str, mode: int
) -> None:
    stem = new_token() + "h"
    outbox = _bulk.Outbox(stem, mode)
    try:
        values: list[Any] = []
        for i, n in enumerate(sizes):
            raw = bytes([i % 251]) * n
            values.append(
                {
                    "bytes": raw,
                    "bytearray": bytearray(raw),
                    "numpy": np.frombuffer(raw, dtype=np.uint8).copy(),
                    "memoryview": memoryview(raw),
                }[kind]
            )
        got = _bulk.loads(send(values, outbox))
        for sent, back in zip(values, got, strict=True):
            if kind == "numpy":
                assert np.array_equal(sent, back)
            elif kind == "memoryview":
                assert bytes(sent) == bytes(back)
            else:
                assert type(back) is type(sent)
                assert back == sent
        del got
        outbox.close()
    finally:
        gc.collect()
        _bulk.unlink_prefix(stem)
    assert _names(stem) == []
