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
    faults. Each receiver keeps its mapping of a segment until the sender
    retires it (a header flag) or its name is gone, so a reused segment is
    not mapped again.
``ONCE`` (a task's items, a chunk's results)
    The receiver unlinks the name as soon as it has mapped the segment, and
    keeps no reference to the mapping: it is unmapped when the last view made
    from it is collected. The sender also unlinks it when it knows the
    message is spent (a chunk that ended), which covers a message never read.
``SHARED`` (a read-only buffer cached per executor, what a function closes over)
    Read by any number of receivers through read-only views; each keeps its
    mapping while it uses it. The owner unlinks it (and marks it retired)
    when the cache lets it go, or when the message that placed it is spent.
``PRIVATE`` (a writable buffer cached per executor)
    Like SHARED, but each message is mapped copy-on-write, on its own: its
    views are writable, and what a receiver writes stays its own.

A receiver counts the views it made of a kept (RECYCLE or SHARED) mapping
through a ctypes array laid over each buffer: every view, array or cast made
from it holds that array, whose finalizer is the one hook that fires when the
last of them is gone.

Every segment is registered with ``multiprocessing``'s resource tracker by
the process that makes it and unregistered by the one that unlinks it (the
processes of one program share that tracker), so a killed program leaves
nothing in ``/dev/shm``. Segment names start with the stream's prefix (a
channel's or an executor's token and the sender's pid), so what a dead
sender left behind is found by name and removed by the stream's owner
(:func:`unlink_prefix`).

Below the threshold nothing changes: the message is the plain pickle, and
the only cost is one length check. Without ``/dev/shm`` (not Linux), every
message is the plain pickle.
"""

import contextlib
import ctypes
import functools
import mmap
import os
import pickle
import secrets
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from typing import Any, Final, cast

#: Where POSIX shared memory lives on Linux: segments are opened there as files,
#: which is what shm_open(3) does. Without it (not Linux), big buffers go
#: through the pipe like the rest.
_SHM_DIR: Final = "/dev/shm"
AVAILABLE: Final = os.path.isdir(_SHM_DIR) and os.access(_SHM_DIR, os.W_OK | os.X_OK)


def shm_open(name: str, flags: int) -> int:
    """``shm_open(3)`` of ``name`` ("/pk…"), as a file of :data:`_SHM_DIR`."""
    return os.open(_SHM_DIR + name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def shm_unlink(name: str) -> None:
    """``shm_unlink(3)``."""
    os.unlink(_SHM_DIR + name)


__all__ = (
    "AVAILABLE",
    "CACHE_BYTES",
    "ONCE",
    "PRIVATE",
    "RECYCLE",
    "SHARED",
    "Cache",
    "Outbox",
    "Parcel",
    "Placement",
    "dumps",
    "is_bulk",
    "loads",
    "message_of",
    "parcel",
    "segment_names",
    "sweep",
    "unlink_names",
    "unlink_prefix",
)

RECYCLE: Final = 0
ONCE: Final = 1
SHARED: Final = 2
#: A cached copy of a writable buffer: every message maps it privately
#: (copy-on-write), so each receiver's views are writable and its own.
PRIVATE: Final = 3

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
#: A sender's RECYCLE segments that may wait for their receivers at once: the
#: FIFO of a channel holds thousands of small messages, so without this bound
#: a fast producer would fill /dev/shm where the pipe would have made it wait.
MOST_BUSY: Final = 32
#: A receiver keeps this many idle mappings of live (not retired) segments.
IDLE_MAPPINGS: Final = 64

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

    __slots__ = ("__weakref__", "cached", "capacity", "mapping", "mode", "name")

    def __init__(self, name: str, capacity: int, mode: int, mapping: mmap.mmap) -> None:
        self.name = name
        self.capacity = capacity
        self.mode = mode
        self.mapping = mapping
        #: Held by a :class:`Cache` and by the messages that refer to it; it is
        #: retired when the last of them lets it go.
        self.cached = False

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
        _retire(self.name, self.mapping)


def _retire(name: str, mapping: mmap.mmap) -> None:
    with contextlib.suppress(ValueError):  # unmapped already
        mapping[_RETIRED] = 1
    _unlink(name)
    with contextlib.suppress(BufferError):
        mapping.close()


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
        # Reserve the pages now: a full /dev/shm is then an OSError here (the
        # message goes through the pipe instead), not a SIGBUS at the first write.
        os.posix_fallocate(fd, 0, capacity)
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

    def place(self, size: int) -> Placement | None:
        """Return a segment with room for ``size`` bytes after the header, marked BUSY.

        Returns:
            The segment; None when :data:`MOST_BUSY` segments of a RECYCLE
            outbox wait for their receivers (the message then goes through
            the pipe, whose capacity slows the sender down as it should).

        Raises:
            OSError: No room in ``/dev/shm``.
        """
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
            busy = 0
            for kept in self._kept:
                if kept.free:
                    idle += kept.capacity
                    if kept.capacity >= need and (best is None or kept.capacity < best.capacity):
                        best = kept
                else:
                    busy += 1
            if best is None:
                if busy >= MOST_BUSY:
                    return None
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
            sweep()  # this process's idle mappings of what it retired (a receiver here too)


# -- the sender's side ----------------------------------------------------------------


#: A cache's lookup: a buffer's reference and its cached segment, or None.
Lookup = Callable[[memoryview], "tuple[tuple[Any, ...], Placement] | None"]


class _Out:
    """Out-of-band buffers of one message, as pickle hands them over."""

    __slots__ = ("big", "cache", "kept", "refs", "threshold", "views")

    def __init__(self, threshold: int, cache: Lookup | None):
        self.threshold = threshold
        self.cache = cache
        #: Per buffer in pickle's order: ("p", index into views) or a cached ref.
        self.refs: list[tuple[Any, ...]] = []
        self.views: list[memoryview] = []
        #: The cached segments the message refers to.
        self.kept: list[Placement] = []
        self.big = False

    def take(self, view: memoryview) -> None:
        if self.cache is not None:
            found = self.cache(view)
            if found is not None:
                self.refs.append(found[0])
                self.kept.append(found[1])
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

    def persistent_id(self, obj: object) -> object:
        out = self._out
        if type(obj) is bytes or type(obj) is bytearray:
            assert isinstance(obj, (bytes, bytearray))
            if len(obj) < out.threshold:
                return None
            out.big = True
            out.take(memoryview(obj))
            return ("y" if type(obj) is bytes else "a", len(out.refs) - 1)
        if type(obj) is memoryview:
            assert isinstance(obj, memoryview)
            if obj.nbytes < out.threshold:
                return None
            view = cast("Any", obj)  # typeshed's cast() takes literal formats only
            if not view.c_contiguous:
                view = cast("Any", memoryview(view.tobytes())).cast(view.format, view.shape or ())
            out.big = True
            out.take(view.cast("B"))
            return ("m", len(out.refs) - 1, view.format, view.shape, view.readonly)
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


def _pickle_with(
    obj: object, out: _Out, makers: tuple[Callable[[Any, _Out], pickle.Pickler], ...]
) -> bytes:
    import io

    for make in makers:
        out.refs.clear()
        out.views.clear()
        out.big = False
        file = io.BytesIO()
        try:
            make(file, out).dump(obj)
        except Exception:
            if make is makers[-1]:
                raise
            continue
        return file.getvalue()
    raise AssertionError("unreachable")  # pragma: no cover


#: How deep into lists, tuples and dicts :func:`_holds_big_bytes` looks, and how
#: many objects it visits at most.
_BYTES_DEPTH: Final = 3
_BYTES_VISITS: Final = 10_000


def _is_big_bytes(item: object, threshold: int) -> bool:
    """Whether ``item`` is a bytes, bytearray or memoryview of ``threshold`` bytes or more."""
    if isinstance(item, (bytes, bytearray)):
        return len(item) >= threshold
    return isinstance(item, memoryview) and item.nbytes >= threshold


def _big_bytes_on_top(obj: object, threshold: int) -> bool:
    """Whether ``obj`` is, or directly holds (a short list or tuple), a big bytes-like object.

    Then the pickler that takes bytes out of band is used at once, rather
    than after a first pickle that copied them in band.
    """
    items: tuple[object, ...] | list[object] = (obj,)
    if type(obj) is tuple or type(obj) is list:
        held = cast("tuple[object, ...] | list[object]", obj)
        if len(held) <= 8:
            items = held
    return any(_is_big_bytes(item, threshold) for item in items)


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
            if _is_big_bytes(item, threshold):
                return True
            if isinstance(item, (list, tuple)):
                deeper.extend(cast("list[object] | tuple[object, ...]", item))
            elif isinstance(item, dict):
                deeper.extend(cast("dict[object, object]", item).values())
        level = deeper
    return False


def dumps(
    obj: object,
    threshold: int | None,
    outbox: Outbox | None,
    *,
    plain: Callable[[object], bytes],
    cache: Lookup | None = None,
    placed: list[Placement] | None = None,
    by_value: bool = False,
) -> bytes:
    """Pickle ``obj``, placing its buffers of ``threshold`` bytes or more in shared memory.

    Args:
        obj: Any object.
        threshold: Smallest buffer that goes through shared memory; None: never.
        outbox: Where this sender places buffers (None: never).
        plain: The serializer to use when nothing is big (keeps its fallbacks).
        cache: Looks a buffer up in a cache of segments placed earlier
            (:meth:`Cache.lookup`).
        placed: Receives the segment this message placed, if any, and the
            cached ones it refers to (hand them to :func:`parcel`).
        by_value: Pickle with cloudpickle from the start (a function that
            must travel by value, as :func:`~parallelkit._serialize.dumps_function`
            decides).

    Returns:
        The message for :func:`loads`.
    """
    if threshold is None or outbox is None or not AVAILABLE:
        return plain(obj)
    out = _Out(threshold, cache)
    data: bytes | None = None
    if by_value:
        data = _pickle_with(obj, out, (_cloud_pickler,))
    elif _big_bytes_on_top(obj, threshold):
        data = _pickle_with(obj, out, (_Pickler, _cloud_pickler))  # no copy in band first
    else:
        with contextlib.suppress(Exception):
            data = pickle.dumps(obj, _PROTOCOL, buffer_callback=out.callback)
        if data is None or (len(data) >= threshold and _holds_big_bytes(obj, threshold)):
            # Something pickle cannot take (cloudpickle will), or big bytes in band.
            data = _pickle_with(obj, out, (_Pickler, _cloud_pickler))
    if not out.big:
        return data
    sealed = _seal(out, data, outbox, placed)
    return plain(obj) if sealed is None else sealed


def _seal(out: _Out, data: bytes, outbox: Outbox, placed: list[Placement] | None) -> bytes | None:
    """The message, its buffers written to a segment; None: no segment to be had."""
    refs = out.refs
    if out.views:
        size = sum(_align(v.nbytes) for v in out.views)
        try:
            placement = outbox.place(size)
        except OSError:  # /dev/shm is full
            placement = None
        if placement is None:
            return None
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
        refs = [
            (placement.name, placement.mode, *spans[int(r[1])]) if r[0] == "p" else r for r in refs
        ]
    if placed is not None:
        placed.extend(out.kept)
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


class Parcel:
    """A message whose segments its sender unlinks once the message is spent.

    The sender keeps the parcel as long as the message may still be read (a
    chunk's items until the chunk ends, a function's blob until the last
    chunk that uses it is gone); when it is garbage-collected, the names of
    the segments it placed are unlinked, and the cached segments it refers to
    are let go (they stay while their cache or another message holds them).
    Receivers that mapped them keep their mapping.

    Attributes:
        data: The message.
    """

    __slots__ = ("__weakref__", "_kept", "data")

    def __init__(self, data: bytes, placed: list[Placement]) -> None:
        self.data = data
        self._kept = [p for p in placed if p.cached]
        own = [p for p in placed if not p.cached]
        for placement in own:
            with contextlib.suppress(BufferError):
                placement.mapping.close()
        weakref.finalize(self, unlink_names, [p.name for p in own]).atexit = False


def parcel(data: bytes, placed: list[Placement]) -> "bytes | Parcel":
    """``data`` itself when it placed nothing, else a :class:`Parcel` owning what it placed."""
    return Parcel(data, placed) if placed else data


def message_of(sent: object) -> bytes:
    """The bytes of what :func:`parcel` returned."""
    if isinstance(sent, Parcel):
        return sent.data
    assert isinstance(sent, bytes)
    return sent


def _libc_memcmp() -> Callable[[int, int, int], int] | None:
    try:
        memcmp = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError):  # pragma: no cover - no C library to ask
        return None
    memcmp.restype = ctypes.c_int
    memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    found: Callable[[int, int, int], int] = memcmp
    return found


_memcmp: Final = _libc_memcmp()


def _same(view: memoryview, mapping: mmap.mmap) -> bool:
    """Whether writable ``view`` holds the bytes placed after ``mapping``'s header."""
    n = view.nbytes
    if _memcmp is None:  # pragma: no cover - no C library
        with memoryview(mapping) as placed:
            return view.cast("B") == placed[HEADER_SIZE : HEADER_SIZE + n]
    mine = ctypes.c_char.from_buffer(view)
    theirs = ctypes.c_char.from_buffer(mapping, HEADER_SIZE)
    try:
        return _memcmp(ctypes.addressof(mine), ctypes.addressof(theirs), n) == 0
    finally:
        del mine, theirs  # their exports must not outlive the call


class Cache:
    """Big buffers placed once per executor, found again by the object that exports them.

    A second task that carries the same object refers to the segment placed
    for the first: a 100 MB argument shared by a thousand tasks is copied
    once. A read-only buffer (a numpy array made read-only) is trusted not to
    change while it is alive: it costs nothing more, and receivers get
    read-only views of one shared mapping (:data:`SHARED`). A writable one is
    compared with what was placed, and placed again if it changed; receivers
    map it copy-on-write (:data:`PRIVATE`), so a task may write to its
    argument as to its own copy. Only objects that take weak references are
    cached (numpy arrays; not ``bytes``: the cache would have to keep them
    alive). An entry goes when its object is garbage-collected, when the
    cache holds more than :data:`CACHE_BYTES` (oldest first), or at
    :meth:`close`.

    Args:
        outbox: Where entries are placed (a :data:`SHARED` outbox).
        threshold: Smallest buffer worth caching.
    """

    def __init__(self, outbox: Outbox, threshold: int) -> None:
        self._outbox = outbox
        self._threshold = threshold
        # Reentrant: a weak reference's callback (an entry's object collected) may
        # run in this thread at any allocation made while the lock is held.
        self._lock = threading.RLock()
        #: id(object) -> (reference, placement, a weak reference to the object)
        self._entries: dict[int, tuple[tuple[Any, ...], Placement, weakref.ref[Any]]] = {}
        self._bytes = 0
        self._closed = False

    def lookup(self, view: memoryview) -> tuple[tuple[Any, ...], Placement] | None:
        """The reference of ``view``'s segment, placing it on first sight; None: not cacheable.

        A read-only buffer is trusted; a writable one is compared with the
        copy placed before (a memcmp, about as fast as a copy into memory
        already mapped, and with no page to fault in) and placed again when
        it changed.
        """
        owner: object = view.obj
        if self._closed:
            return None
        mode = SHARED if view.readonly else PRIVATE
        key = id(owner)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                ref, cached, kept = found
                if (
                    kept() is owner
                    and ref[3] == view.nbytes
                    and (view.readonly or _same(view, cached.mapping))
                ):
                    return (ref[0], mode, *ref[2:]), cached
                self._drop(key)
            try:
                held = weakref.ref(owner, functools.partial(self._gone, key))
            except TypeError:
                # bytes, bytearray: holding one until eviction could keep gigabytes
                # alive that the caller let go; it is sent as a message's own.
                return None
            try:
                placement = self._outbox.place(view.nbytes)
            except OSError:  # /dev/shm is full: sent as a message's own, or in band
                return None
            assert placement is not None  # a SHARED outbox always places
            with memoryview(placement.mapping) as target:
                target[HEADER_SIZE : HEADER_SIZE + view.nbytes] = view.cast("B")
            placement.cached = True
            # Retired when the cache and every message that refers to it let it go.
            weakref.finalize(placement, _retire, placement.name, placement.mapping).atexit = False
            ref = (placement.name, mode, HEADER_SIZE, view.nbytes)
            self._entries[key] = (ref, placement, held)
            self._bytes += placement.capacity
            while self._bytes > CACHE_BYTES and len(self._entries) > 1:
                self._drop(next(iter(self._entries)))
            return ref, placement

    def _gone(self, key: int, _: object) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1].capacity

    def close(self) -> None:
        """Let go of every entry (retired once no pending message refers to it)."""
        with self._lock:
            self._closed = True
            for key in list(self._entries):
                self._drop(key)


#: Most bytes a :class:`Cache` keeps placed.
CACHE_BYTES: Final = 1 << 30


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

    @property
    def gone(self) -> bool:
        """Whether its sender let it go: retired, or its name unlinked (a dead sender's)."""
        return self.retired or not os.path.exists(_SHM_DIR + self.name)


_maps_lock = threading.Lock()
#: RECYCLE and SHARED segments mapped here, by name (kept while their sender keeps them).
_maps: dict[str, _Mapped] = {}
_maps_pid = os.getpid()
#: A mapping holds no descriptor of its own where mmap allows it (3.13+).
_NO_FD: Final[dict[str, Any]] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


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
        access = mmap.ACCESS_COPY if mode == PRIVATE else mmap.ACCESS_WRITE
        mapping = mmap.mmap(fd, os.fstat(fd).st_size, access=access, **_NO_FD)
    finally:
        os.close(fd)
    if mode == ONCE:
        _unlink(name)
    return _Mapped(name, mode, mapping)


def _mapped(name: str, mode: int) -> _Mapped:
    """The segment, mapped here, with one more live view counted for the caller.

    The count goes up under the same lock as the look-up, so that another
    thread's :func:`sweep` cannot unmap an idle mapping in between.
    """
    global _maps_pid
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


def sweep() -> None:
    """Unmap the idle mappings of segments their senders let go, and the oldest beyond the cap.

    Runs as each message is read; :func:`parallelkit.testing.no_leaks` runs
    it too, before it counts descriptors.
    """
    with _maps_lock:
        idle = [m for m in _maps.values() if m.live == 0]
        extra = len(idle) - IDLE_MAPPINGS
        for i, m in enumerate(idle):
            if i < extra or m.gone:
                del _maps[m.name]
                _let_go(m.mapping)


#: How often (seconds) reading a message also sweeps: each idle mapping costs a stat().
_SWEEP_EVERY: Final = 0.05
_swept = 0.0


def _sweep_now_and_then() -> None:
    global _swept
    if _maps:
        now = time.monotonic()
        if now - _swept >= _SWEEP_EVERY:
            _swept = now
            sweep()


def _release(segment: _Mapped) -> None:
    with _maps_lock:
        segment.live -= 1
        if segment.live == 0:
            if segment.mode == RECYCLE:
                segment.mapping[_STATE] = FREE
            if segment.gone:
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

    def persistent_load(self, pid: tuple[Any, ...]) -> object:
        kind: str = pid[0]
        self._claimed.add(pid[1])
        view = cast("Any", self._views[pid[1]])  # typeshed's cast() takes literal formats only
        if kind == "y":
            return bytes(view)
        if kind == "a":
            return bytearray(view)
        if kind == "m":
            fmt: str = pid[2]
            shape: tuple[int, ...] | None = pid[3]
            return view.cast(fmt, shape) if shape else view.cast(fmt)
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
    once: dict[str, memoryview] = {}
    try:
        for name, mode, offset, size in refs:
            if mode in (ONCE, PRIVATE):
                # A mapping of this message's own: nothing here keeps it, so it is
                # unmapped as soon as the last view made from it is collected.
                segment = once.get(name)
                if segment is None:
                    segment = once[name] = memoryview(_open(name, mode).mapping)
                views.append(segment[offset : offset + size])
            else:
                views.append(_view(_mapped(name, mode), offset, size))
        once.clear()
        return _Unpickler(whole[start + n :], views).load()
    finally:
        del views, once  # what the object does not hold is released now
        _sweep_now_and_then()


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
        sweep()  # this process's idle mappings of them (and their descriptors) go now
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
