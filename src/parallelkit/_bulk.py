"""Big buffers through shared memory: what a pickle would otherwise copy through a pipe.

::

    sender                                                   receiver
    ──────                                                   ────────
    dumps(obj, threshold, outbox)
      pickle protocol 5: a buffer ≥ threshold (numpy array,
      PickleBuffer, bytes, bytearray, memoryview) is taken
      out of band ──▶ outbox.place(): one segment /pk…       loads(message)
                      [64-byte header | buffer | buffer…]  ◀──  maps the segment (MAP_SHARED),
      message = b"B" + refs (segment, offset, size) +           a memoryview per buffer; numpy
                the pickle, now small ──── pipe / FIFO ───▶     arrays and memoryviews are built
                                                                on it, bytes/bytearray copied out
                                                                when every view is gone: release

A segment is used in one of three ways, written in its reference:

``RECYCLE`` (channel items)
    The sender keeps its segments and reuses one once its receiver has let it
    go: the receiver sets the header's state byte to FREE when the last view
    it built is garbage-collected (at once for bytes, which are copied out).
    A steady stream of 1 MB items therefore costs one copy in and no page
    faults. Each receiver keeps its mappings until the sender retires the
    segment (a header flag), so a reused segment is not mapped again.
``ONCE`` (a task's items, a chunk's results)
    The receiver unlinks the name as soon as it has mapped the segment; the
    kernel frees the memory when the receiver's last view is gone. The
    sender also unlinks it when it knows the message is spent (a chunk that
    ended), which covers a message that was never read.
``SHARED`` (a read-only buffer cached per executor, what a function closes over)
    Mapped read-only by any number of receivers, which keep their mapping
    while they use it; the owner unlinks it (and marks it retired) when the
    cache lets it go or the executor shuts down.

Every segment is registered with ``multiprocessing``'s resource tracker by
the process that makes it and unregistered by the one that unlinks it (the
processes of one program share that tracker), so a killed program leaves
nothing in ``/dev/shm``. Segment names start with the stream's prefix (a
channel's or an executor's token and the sender's pid), so what a dead
sender left behind is found by name and removed by the stream's owner
(:func:`unlink_prefix`).

Below the threshold nothing changes: the message is the plain pickle, and
the only cost is one length check.
"""

# memoryview is generic in the type stubs; the views here are of bytes of any format.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false
# pyright: reportUnknownArgumentType=false

import contextlib
import ctypes
import mmap
import os
import pickle
import secrets
import struct
import threading
import weakref
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from typing import Any, Final, cast

from ._channels._sharing import shm_open, shm_unlink

__all__ = (
    "ONCE",
    "RECYCLE",
    "SHARED",
    "Outbox",
    "Placement",
    "dumps",
    "is_bulk",
    "loads",
    "segment_names",
    "unlink_names",
    "unlink_prefix",
)

RECYCLE: Final = 0
ONCE: Final = 1
SHARED: Final = 2

#: The first byte of a message that carries buffers in shared memory (a
#: protocol-5 pickle starts with b"\\x80").
MAGIC: Final = b"B"
_LENGTH: Final = struct.Struct("!I")
HEADER_SIZE: Final = 64
ALIGN: Final = 64
#: Header bytes: 0 the state, 1 retired.
_STATE: Final = 0
_RETIRED: Final = 1
FREE: Final = 0
BUSY: Final = 1

#: Segments are made in whole multiples of this (a reused one fits a little more).
_GRAIN: Final = 1 << 20
#: A sender keeps idle RECYCLE segments up to this many bytes; beyond, it unlinks them.
IDLE_BYTES: Final = 256 << 20
#: A receiver keeps this many idle mappings of live (not retired) segments.
IDLE_MAPPINGS: Final = 64
_SHM_DIR: Final = "/dev/shm"

_PROTOCOL: Final = 5


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _register(name: str) -> None:
    resource_tracker.register(name, "shared_memory")


def _unregister(name: str) -> None:
    resource_tracker.unregister(name, "shared_memory")


def _forget(name: str) -> None:
    """Make the resource tracker forget ``name``, whether it knows it or not.

    The tracker raises (and prints a KeyError traceback) on an unregister of
    a name it does not hold, which happens to a name unlinked by another
    process than its creator (a stream's owner cleaning up) or already let
    go of. A register first makes the unregister safe: the two messages go
    through the same pipe, in order.
    """
    _register(name)
    _unregister(name)


def _unlink(name: str) -> bool:
    """Unlink ``name`` and have the resource tracker forget it; False if it was already gone."""
    try:
        shm_unlink(name)
    except FileNotFoundError:
        gone = True
    else:
        gone = False
    _forget(name)
    return not gone


# -- a segment as its sender holds it --------------------------------------------------


class Placement:
    """Buffers written into one segment by its sender.

    Attributes:
        name: The segment's POSIX name.
        capacity: Its size in bytes, header included.
        mode: :data:`RECYCLE`, :data:`ONCE` or :data:`SHARED`.
        mapping: The sender's writable mapping.
    """

    __slots__ = ("__weakref__", "capacity", "mapping", "mode", "name")

    def __init__(self, name: str, capacity: int, mode: int, mapping: mmap.mmap) -> None:
        self.name = name
        self.capacity = capacity
        self.mode = mode
        self.mapping = mapping

    @property
    def free(self) -> bool:
        """Whether its receiver has let it go (RECYCLE segments)."""
        return self.mapping[_STATE] == FREE

    def give_back(self) -> None:
        """Its message was never sent: a RECYCLE segment is free again, another is retired."""
        if self.mode != RECYCLE:
            self.retire()
            return
        with contextlib.suppress(ValueError):  # its outbox closed meanwhile
            self.mapping[_STATE] = FREE

    def retire(self) -> None:
        """Mark it retired, unlink its name and unmap it here (receivers keep theirs)."""
        with contextlib.suppress(ValueError):
            self.mapping[_RETIRED] = 1
        _unlink(self.name)
        with contextlib.suppress(BufferError):
            self.mapping.close()


def _create(prefix: str, size: int, mode: int) -> Placement:
    capacity = max(_GRAIN, (size + _GRAIN - 1) // _GRAIN * _GRAIN)
    for _ in range(100):
        name = f"/{prefix}{secrets.token_hex(6)}"
        try:
            fd = shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        break
    else:  # pragma: no cover
        raise FileExistsError("cannot find a free shared-memory name")
    _register(name)
    try:
        os.ftruncate(fd, capacity)
        mapping = mmap.mmap(fd, capacity)
    except BaseException:
        os.close(fd)
        _unlink(name)
        raise
    os.close(fd)
    return Placement(name, capacity, mode, mapping)


class Outbox:
    """Where one sender (a process, for one stream) places big buffers.

    Args:
        prefix: The stream's name prefix; the sender's pid is added to it.
        mode: How its segments are used (:data:`RECYCLE` or :data:`ONCE`).
    """

    def __init__(self, prefix: str, mode: int) -> None:
        self._prefix = prefix
        self._mode = mode
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: RECYCLE segments: the ones this sender made and has not retired.
        self._kept: list[Placement] = []

    @property
    def prefix(self) -> str:
        """The names of this sender's segments start with ``/`` and this."""
        return f"{self._prefix}{self._pid}-"

    def place(self, size: int) -> Placement:
        """Return a segment with room for ``size`` bytes after the header, marked BUSY."""
        if os.getpid() != self._pid:  # inherited through fork: start afresh
            self.__init__(self._prefix, self._mode)  # type: ignore[misc]
        need = HEADER_SIZE + size
        if self._mode != RECYCLE:
            placement = _create(self.prefix, need, self._mode)
            placement.mapping[_STATE] = BUSY
            return placement
        with self._lock:
            best: Placement | None = None
            idle = 0
            for kept in self._kept:
                if kept.free:
                    idle += kept.capacity
                    if kept.capacity >= need and (best is None or kept.capacity < best.capacity):
                        best = kept
            if best is None:
                best = _create(self.prefix, need, RECYCLE)
                self._kept.append(best)
            best.mapping[_STATE] = BUSY
            if idle > IDLE_BYTES:
                self._trim()
            return best

    def _trim(self) -> None:
        idle = sorted((p for p in self._kept if p.free), key=lambda p: p.capacity)
        total = sum(p.capacity for p in idle)
        while idle and total > IDLE_BYTES:
            victim = idle.pop()
            total -= victim.capacity
            self._kept.remove(victim)
            victim.retire()

    def close(self) -> None:
        """Let go of every segment: idle ones are unlinked, busy ones left to their receiver.

        A busy segment holds an item still on its way (a Queue item put by a
        process that is now exiting): its name stays until a receiver has
        mapped it, and the stream's owner removes whatever is left
        (:func:`unlink_prefix`).
        """
        if os.getpid() != self._pid:
            return
        with self._lock:
            kept, self._kept = self._kept, []
        for placement in kept:
            if placement.free:
                placement.retire()
            else:
                # Left for the receiver (or the owner); the tracker must not remove it
                # when this process's program ends before the receiver maps it. (The
                # owner may have unlinked it already: then the tracker forgot it too.)
                _forget(placement.name)
                with contextlib.suppress(BufferError):
                    placement.mapping.close()
        if _maps:
            _sweep()  # this process's idle mappings of what it retired (a receiver here too)


# -- the sender's side ----------------------------------------------------------------


class _Out:
    """Out-of-band buffers of one message, as pickle hands them over."""

    __slots__ = ("big", "cache", "refs", "threshold", "views")

    def __init__(
        self, threshold: int, cache: Callable[[memoryview], tuple[Any, ...] | None] | None
    ):
        self.threshold = threshold
        self.cache = cache
        #: Per buffer in pickle's order: ("p", index into views) or a cached ref.
        self.refs: list[tuple[Any, ...]] = []
        self.views: list[memoryview] = []
        self.big = False

    def take(self, view: memoryview) -> None:
        if self.cache is not None:
            ref = self.cache(view)
            if ref is not None:
                self.refs.append(ref)
                return
        self.refs.append(("p", len(self.views)))
        self.views.append(view)

    def callback(self, buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < self.threshold:
            return True  # in band
        self.big = True
        self.take(view)
        return False


class _Pickler(pickle.Pickler):
    """Takes big ``bytes``, ``bytearray`` and ``memoryview`` objects out of band too."""

    def __init__(self, file: Any, out: _Out) -> None:
        super().__init__(file, _PROTOCOL, buffer_callback=out.callback)
        self._out = out

    def persistent_id(self, obj: Any) -> Any:
        out = self._out
        kind = type(obj)
        if kind is bytes or kind is bytearray:
            if len(obj) < out.threshold:
                return None
            out.big = True
            out.take(memoryview(obj))
            return ("y" if kind is bytes else "a", len(out.refs) - 1)
        if kind is memoryview:
            if obj.nbytes < out.threshold:
                return None
            if not obj.c_contiguous:
                obj = memoryview(obj.tobytes()).cast(obj.format, obj.shape)
            out.big = True
            out.take(obj.cast("B"))
            return ("m", len(out.refs) - 1, obj.format, obj.shape, obj.readonly)
        return None


def _cloud_pickler(file: Any, out: _Out) -> pickle.Pickler:
    import cloudpickle

    base: Any = cloudpickle.Pickler

    class CloudPickler(base):  # type: ignore[misc]
        def persistent_id(self, obj: Any) -> Any:
            return _Pickler.persistent_id(self, obj)

    pickler: Any = CloudPickler(file, _PROTOCOL, buffer_callback=out.callback)
    pickler._out = out
    result: pickle.Pickler = pickler
    return result


def _pickle_with(obj: object, out: _Out) -> bytes:
    import io

    for make in (_Pickler, _cloud_pickler):
        out.refs.clear()
        out.views.clear()
        out.big = False
        file = io.BytesIO()
        try:
            make(file, out).dump(obj)
        except Exception:
            if make is _cloud_pickler:
                raise
            continue
        return file.getvalue()
    raise AssertionError("unreachable")  # pragma: no cover


#: How deep into lists, tuples and dicts :func:`_holds_big_bytes` looks, and how
#: many objects it visits at most.
_BYTES_DEPTH: Final = 3
_BYTES_VISITS: Final = 10_000


def _holds_big_bytes(obj: object, threshold: int) -> bool:
    """Whether ``obj`` holds a bytes, bytearray or memoryview of ``threshold`` bytes or more.

    pickle writes ``bytes`` in band without asking anyone (only a persistent
    id hook, called for every object, sees them), so the slower pickler that
    takes them out of band is used only when this finds one: at the top, or
    in lists, tuples and dict values up to three levels down.
    """
    level: list[object] = [obj]
    visits = 0
    for _ in range(_BYTES_DEPTH + 1):
        deeper: list[object] = []
        for item in level:
            visits += 1
            if visits > _BYTES_VISITS:
                return False
            kind = type(item)
            if kind is bytes or kind is bytearray:
                if len(item) >= threshold:  # type: ignore[arg-type]
                    return True
            elif kind is memoryview:
                if item.nbytes >= threshold:  # type: ignore[attr-defined]
                    return True
            elif kind is list or kind is tuple:
                deeper.extend(cast("list[object]", item))
            elif kind is dict:
                deeper.extend(item.values())  # type: ignore[attr-defined]
        level = deeper
    return False


def dumps(
    obj: object,
    threshold: int | None,
    outbox: Outbox | None,
    *,
    plain: Callable[[object], bytes],
    cache: Callable[[memoryview], tuple[Any, ...] | None] | None = None,
    placed: list[Placement] | None = None,
) -> bytes:
    """Pickle ``obj``, placing its buffers of ``threshold`` bytes or more in shared memory.

    Args:
        obj: Any object.
        threshold: Smallest buffer that goes through shared memory; None: never.
        outbox: Where this sender places buffers (None: never).
        plain: The serializer to use when nothing is big (keeps its fallbacks).
        cache: Looks a buffer up in a cache of segments placed earlier
            (:data:`SHARED`); returns its reference, or None.
        placed: Receives the segment this message placed, if any.

    Returns:
        The message for :func:`loads`.
    """
    if threshold is None or outbox is None:
        return plain(obj)
    out = _Out(threshold, cache)
    try:
        data = pickle.dumps(obj, _PROTOCOL, buffer_callback=out.callback)
    except Exception:
        data = None
    if data is None or (len(data) >= threshold and _holds_big_bytes(obj, threshold)):
        # Something pickle cannot take (cloudpickle will), or big bytes in band.
        data = _pickle_with(obj, out)
    if not out.big:
        return data
    return _seal(out, data, outbox, placed)


def _seal(out: _Out, data: bytes, outbox: Outbox, placed: list[Placement] | None) -> bytes:
    refs = out.refs
    if out.views:
        size = sum(_align(v.nbytes) for v in out.views)
        placement = outbox.place(size)
        if placed is not None:
            placed.append(placement)
        offset = HEADER_SIZE
        target = memoryview(placement.mapping)
        spans: list[tuple[int, int]] = []
        for view in out.views:
            n = view.nbytes
            target[offset : offset + n] = view.cast("B") if view.format != "B" else view
            spans.append((offset, n))
            offset += _align(n)
        target.release()
        refs = [(placement.name, placement.mode, *spans[r[1]]) if r[0] == "p" else r for r in refs]
    head = pickle.dumps(refs, _PROTOCOL)
    return b"".join((MAGIC, _LENGTH.pack(len(head)), head, data))


def is_bulk(message: bytes | bytearray | memoryview) -> bool:
    """Whether ``message`` carries buffers in shared memory."""
    return message[:1] == MAGIC


def segment_names(message: bytes | bytearray | memoryview) -> list[str]:
    """The names of the segments a message refers to (an empty list for a plain pickle)."""
    if not is_bulk(message):
        return []
    (n,) = _LENGTH.unpack_from(message, 1)
    refs: list[tuple[Any, ...]] = pickle.loads(message[1 + _LENGTH.size : 1 + _LENGTH.size + n])
    return sorted({r[0] for r in refs})


# -- the receiver's side --------------------------------------------------------------


class _Mapped:
    """A segment mapped in this (receiving) process."""

    __slots__ = ("live", "mapping", "mode", "name")

    def __init__(self, name: str, mode: int, mapping: mmap.mmap) -> None:
        self.name = name
        self.mode = mode
        self.mapping = mapping
        #: Views of it handed out here and not yet collected.
        self.live = 0

    @property
    def retired(self) -> bool:
        return self.mapping[_RETIRED] != 0


_maps_lock = threading.Lock()
#: RECYCLE and SHARED segments mapped here, by name (kept while their sender keeps them).
_maps: dict[str, _Mapped] = {}
_maps_pid = os.getpid()


def _open(name: str, mode: int) -> _Mapped:
    try:
        fd = shm_open(name, os.O_RDWR)
    except FileNotFoundError:
        from ._errors import ClosedChannelError

        raise ClosedChannelError(
            f"the shared memory {name!r} of a message is gone: its sender released it before "
            "this process read the message (the stream was closed, or the sender's executor "
            "or channel was garbage-collected)"
        ) from None
    try:
        mapping = mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if mode == ONCE:
        _unlink(name)
    return _Mapped(name, mode, mapping)


def _mapped(name: str, mode: int) -> _Mapped:
    """The segment, mapped here, with one more live view counted for the caller.

    The count goes up under the same lock as the look-up, so that another
    thread's :func:`_sweep` cannot unmap an idle mapping in between.
    """
    global _maps_pid
    if mode == ONCE:
        once = _open(name, mode)
        once.live += 1
        return once
    with _maps_lock:
        if _maps_pid != os.getpid():  # forked: the parent's mappings are not ours to count
            _maps.clear()
            _maps_pid = os.getpid()
        found = _maps.get(name)
        if found is None or found.retired:
            found = _open(name, mode)
            _maps[name] = found
        found.live += 1
        return found


def _let_go(mapping: mmap.mmap) -> None:
    """Unmap now, or else when the last buffer export on it is released.

    A view's finalizer runs just before the view releases its export, so the
    mapping cannot be closed from there: this module then only drops its
    reference, and the ``mmap`` object, freed with that export, unmaps and
    closes its descriptor itself.
    """
    with contextlib.suppress(BufferError):
        mapping.close()


def _sweep() -> None:
    """Let go of idle mappings of retired segments, and of the oldest idle ones beyond the cap."""
    with _maps_lock:
        idle = [m for m in _maps.values() if m.live == 0]
        extra = len(idle) - IDLE_MAPPINGS
        for i, m in enumerate(idle):
            if m.retired or i < extra:
                del _maps[m.name]
                _let_go(m.mapping)


def _release(segment: _Mapped) -> None:
    with _maps_lock:
        segment.live -= 1
        if segment.live == 0:
            if segment.mode == RECYCLE:
                segment.mapping[_STATE] = FREE
            if segment.mode == ONCE or segment.retired:
                if _maps.get(segment.name) is segment:
                    del _maps[segment.name]
                _let_go(segment.mapping)


def _view(segment: _Mapped, offset: int, size: int) -> memoryview:
    """A view of ``size`` bytes at ``offset`` (counted by :func:`_mapped`); released when gone.

    The view (and every view or array made from it) holds a ctypes array
    laid over the mapping: the array's finalizer is the one hook that fires
    only when the last of them is collected, however they were derived.
    """
    try:
        holder = (ctypes.c_ubyte * size).from_buffer(segment.mapping, offset)
    except BaseException:
        _release(segment)
        raise
    weakref.finalize(holder, _release, segment).atexit = False
    view = memoryview(holder).cast("B")
    return view.toreadonly() if segment.mode == SHARED else view


def _unclaimed(views: list[memoryview], claimed: set[int]) -> Iterator[memoryview]:
    for index, view in enumerate(views):
        if index not in claimed:
            yield view


class _Unpickler(pickle.Unpickler):
    """Hands out-of-band buffers and persistent ids the views that are theirs.

    The references are in the order the pickle met them, out-of-band
    buffers (pickle's ``NEXT_BUFFER``, which takes the next one of
    ``buffers``) and big bytes (persistent ids, which name their index)
    interleaved. Meeting them in the same order here, a ``NEXT_BUFFER``
    takes the first view that no persistent id has claimed.
    """

    def __init__(self, data: memoryview, views: list[memoryview]) -> None:
        import io

        self._views = views
        self._claimed: set[int] = set()
        # (A function of the two, not a method: no reference cycle through self.)
        super().__init__(io.BytesIO(data), buffers=_unclaimed(views, self._claimed))

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        self._claimed.add(pid[1])
        view = self._views[pid[1]]
        if kind == "y":
            return bytes(view)
        if kind == "a":
            return bytearray(view)
        if kind == "m":
            return view.cast(pid[2], pid[3]) if pid[3] else view.cast(pid[2])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")  # pragma: no cover


def loads(message: bytes | bytearray | memoryview) -> Any:
    """Read a message made by :func:`dumps` (or a plain pickle).

    Args:
        message: The bytes received.

    Returns:
        The object. Its numpy arrays, PickleBuffers and memoryviews are views
        on shared memory; bytes and bytearrays are copies.

    Raises:
        ClosedChannelError: A segment was released by its sender before this
            read (the message is lost with it).
    """
    if message[:1] != MAGIC:
        return pickle.loads(message)
    whole = memoryview(message)
    (n,) = _LENGTH.unpack_from(whole, 1)
    start = 1 + _LENGTH.size
    refs: list[tuple[str, int, int, int]] = pickle.loads(whole[start : start + n])
    views: list[memoryview] = []
    try:
        for name, mode, offset, size in refs:
            views.append(_view(_mapped(name, mode), offset, size))
        return _Unpickler(whole[start + n :], views).load()
    finally:
        del views  # what the object does not hold is released now
        if _maps:
            _sweep()


# -- cleaning up by name --------------------------------------------------------------


def unlink_names(names: list[str]) -> None:
    """Unlink segments by name (those already gone are skipped)."""
    for name in names:
        _unlink(name)


def unlink_prefix(prefix: str) -> int:
    """Unlink every segment whose name starts with ``prefix``; return how many.

    For what a dead sender left behind, or a stream's leftovers when its
    owner releases it.
    """
    try:
        entries = os.listdir(_SHM_DIR)
    except OSError:  # pragma: no cover - no /dev/shm
        return 0
    count = 0
    for entry in entries:
        if entry.startswith(prefix):
            name = "/" + entry
            _mark_retired(name)
            count += _unlink(name)
    if _maps:
        _sweep()  # this process's idle mappings of them (and their descriptors) go now
    return count


def _mark_retired(name: str) -> None:
    """Set a segment's retired flag, so that its receivers let go of their mappings.

    Without it, a receiver would keep an idle mapping (and the descriptor
    ``mmap`` holds) of a segment that its owner removed.
    """
    try:
        fd = shm_open(name, os.O_RDWR)
    except OSError:
        return
    try:
        if os.fstat(fd).st_size >= HEADER_SIZE:
            os.pwrite(fd, b"\x01", _RETIRED)
    finally:
        os.close(fd)
