"""JoinableQueue: a Queue that counts unfinished tasks, with task_done() and join().

Process backend, on top of the Queue's FIFO and semaphores (see :mod:`._queue`)::

    producer (any process)               consumer (any process)            joiner (any process)
    put(x): unfinished += 1,             get(): as Queue                   join(): under the lock,
            then as Queue                ... works on x ...                wait on the Condition
            (a put that fails            task_done(): under the lock,      until unfinished == 0
             takes its count back)       unfinished -= 1; at 0 notify_all

    named semaphores: the Queue's, plus unfinished (accepted, not yet task_done)
    and a parallelkit Condition (a lock and three semaphores) for join()

The count goes up before an item can be taken, so a consumer's task_done()
never overtakes its put(); it goes down only under the Condition's lock, so
join() cannot miss the last task_done(). A put() needs no lock: a count that
goes up never wakes anyone.

Thread (and serial) backend: the Queue's deque, with an int guarded by its
mutex and a third condition on that mutex, as ``queue.Queue`` does.
"""

# The channel classes build and rebuild one another's objects (unpickling, locks shared
# by Values): access to their underscore attributes stays inside this package.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

from .._config import Settings
from .._errors import ClosedChannelError
from ._big import Items
from ._queue import Queue, _ProcessQueue, _ThreadQueue
from ._sharing import SEM_VALUE_MAX, SEMAPHORE, RawSemLock, create_semlock, open_semlock, own
from ._sync import Condition, Lock
from ._types import T

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ("JoinableQueue", "make_joinable_queue")

#: multiprocessing's message, word for word.
_TOO_MANY: Final = "task_done() called too many times"


class _ThreadJoinableQueue(_ThreadQueue):
    __slots__ = ("_all_done", "_unfinished")

    def __init__(self, maxsize: int, check_pickle: bool) -> None:
        super().__init__(maxsize, check_pickle)
        self._unfinished = 0
        self._all_done = threading.Condition(self._mutex)

    def _accept(self, count: int) -> None:
        self._unfinished += count

    def task_done(self) -> None:
        with self._all_done:
            if self._unfinished <= 0:
                raise ValueError(_TOO_MANY)
            self._unfinished -= 1
            if not self._unfinished:
                self._all_done.notify_all()

    def join(self, timeout: float | None) -> bool:
        with self._all_done:
            return self._all_done.wait_for(lambda: not self._unfinished, timeout)

    def unfinished(self) -> int | None:
        return self._unfinished


class _ProcessJoinableQueue(_ProcessQueue):
    __slots__ = ("_cond", "_unfinished")

    _cond: Condition
    _unfinished: RawSemLock

    @classmethod
    def create(cls, maxsize: int, threshold: int | None) -> Self:
        self = super().create(maxsize, threshold)
        # This is the implementation that crosses processes: its lock must too.
        self._cond = Condition(Lock(backend="process"))
        self._unfinished, name = create_semlock(SEMAPHORE, 0, SEM_VALUE_MAX)
        own(self, semaphores=(name,))
        self._state = (*self._state, self._cond, name)
        return self

    @classmethod
    def open(cls, state: tuple[Any, ...]) -> Self:
        *queue_state, cond, name = state
        self = super().open(tuple(queue_state))
        self._state = state
        self._cond = cond
        self._unfinished = open_semlock(SEMAPHORE, SEM_VALUE_MAX, name, "JoinableQueue")
        return self

    def _accept(self, count: int) -> None:
        unfinished = self._unfinished
        for _ in range(count):
            unfinished.release()
        try:
            super()._accept(count)
        except ClosedChannelError:
            self._settle(count)
            raise

    def _settle(self, count: int) -> None:
        """Count ``count`` tasks as done without a check (they never reached a consumer)."""
        with self._cond:
            for _ in range(count):
                self._unfinished.acquire(False)
            if self._unfinished._is_zero():
                self._cond.notify_all()

    def get(self, block: bool, timeout: float | None) -> Any:
        return self._deliver(self._take_many(1, block, timeout))[0]

    def get_many(self, max_items: int | None, block: bool, timeout: float | None) -> list[Any]:
        return self._deliver(self._take_many(max_items, block, timeout))

    def _deliver(self, payloads: list[bytes | bytearray | memoryview]) -> list[Any]:
        """Unpickle taken items; if that fails, no task_done() can come for them."""
        try:
            return [Items.loads(p) for p in payloads]
        except BaseException:
            self._settle(len(payloads))
            raise

    def task_done(self) -> None:
        with self._cond:
            if not self._unfinished.acquire(False):
                raise ValueError(_TOO_MANY)
            if self._unfinished._is_zero():
                self._cond.notify_all()

    def join(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(self._unfinished._is_zero, timeout)

    def unfinished(self) -> int | None:
        try:
            return self._unfinished._get_value()
        except NotImplementedError:  # no sem_getvalue (macOS)
            return None


@final
class JoinableQueue(Queue[T]):
    """A :class:`Queue` that counts unfinished tasks: ``task_done()`` and ``join()``.

    Everything about :class:`Queue` holds (constructor, methods, typing,
    :meth:`~Queue.close` as end-of-stream, passing it to workers as an
    ordinary argument on every backend and start method). On top of that,
    as with ``multiprocessing.JoinableQueue``, every item put counts as an
    unfinished task until a consumer calls :meth:`task_done` for it, and
    :meth:`join` waits until none is left.

    - Only items the queue accepted count: a ``put`` that raises
      (``queue.Full``, :class:`~parallelkit.ClosedChannelError`) adds
      nothing, and a bounded ``put_many`` that times out counts the items
      that went in.
    - :meth:`~Queue.close` does not release :meth:`join`: the items put
      before it still wait for their ``task_done()`` (consumers can take
      them and call it after the close, and their ``for item in q`` loop
      ends once the queue is drained). So the usual ending is
      ``q.close(); q.join()``.
    - On the process backend, an item that a ``get`` took but could not
      unpickle counts as done: the ``get`` raises the error in the consumer,
      and no ``task_done()`` can ever come for it.

    Args:
        maxsize: Most items held at once; 0 or less means unbounded.
        backend: ``"process"``, ``"thread"`` or ``"serial"``; None follows the
            configuration, like the Executor.

    Raises:
        ConfigError: The backend (from any source) is unknown, or is dask
            (no task counter to join on there: use a Queue).

    Examples:
        >>> import parallelkit
        >>> q = parallelkit.JoinableQueue[int](backend="thread")
        >>> done: list[int] = []
        >>> def work() -> None:
        ...     for item in q:
        ...         done.append(item * 10)
        ...         q.task_done()
        >>> worker = parallelkit.spawn(work, backend="thread")
        >>> q.put_many([1, 2, 3])
        >>> q.join()  # returns once task_done() was called for each of the three
        >>> done
        [10, 20, 30]
        >>> q.close()  # ends the worker's loop
        >>> worker.join()
    """

    __slots__ = ()

    _process_impl: ClassVar[type[_ProcessQueue]] = _ProcessJoinableQueue
    _thread_impl: ClassVar[type[_ThreadQueue]] = _ThreadJoinableQueue
    _no_cluster: ClassVar[str] = (
        "distributed has no task counter to join on; use a Queue and count the results "
        "(or the futures of the tasks) instead"
    )

    def _tasks(self) -> _ProcessJoinableQueue | _ThreadJoinableQueue:
        impl: Any = self._impl  # _start and _open_queue build it from the classes above
        tasks: _ProcessJoinableQueue | _ThreadJoinableQueue = impl
        return tasks

    def task_done(self) -> None:
        """Say that one item taken from the queue has been processed.

        Call it once per item, after a ``get`` (or once per item of a
        ``get_many``), from any thread or process.

        Raises:
            ValueError: Called more times than items were put
                (``task_done() called too many times``, as ``multiprocessing``).
        """
        self._tasks().task_done()

    def join(self, timeout: float | None = None) -> None:
        """Wait until every item put has been matched by a :meth:`task_done` call.

        Returns at once if nothing is unfinished. Closing the queue does not
        release it (see the class description).

        Args:
            timeout: Wait at most this many seconds (a parallelkit extension;
                ``multiprocessing``'s ``join()`` has none). None waits for as
                long as it takes.

        Raises:
            TimeoutError: ``timeout`` passed with tasks still unfinished.
        """
        tasks = self._tasks()
        if not tasks.join(timeout):
            left = tasks.unfinished()
            count = "some" if left is None else str(left)
            raise TimeoutError(
                f"JoinableQueue.join(timeout={timeout}): {count} items put are not done yet "
                "(a consumer has not taken them, or has not called task_done() for them)"
            )


def make_joinable_queue(settings: Settings, maxsize: int) -> JoinableQueue[Any]:
    """A JoinableQueue for exactly these settings (an Executor's or Pool's own)."""
    q: JoinableQueue[Any] = JoinableQueue.__new__(JoinableQueue)
    q._start(maxsize, settings)
    return q
