"""``Timed(fn, seconds)``: a time limit that travels with the function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar, final

from ._engine import check_timeout

__all__ = ("Timed", "unwrap")

T = TypeVar("T")
P = ParamSpec("P")


@final
class Timed(Generic[P, T]):
    """Wrap a function so every call of it through parallelkit gets a time limit.

    ``Executor.submit``'s keyword arguments belong to the function, so its
    time limit is given this way; it works wherever parallelkit takes a
    function (``submit``, ``map``, ``apply_async``, ``loop.run_in_executor``).
    An explicit ``task_timeout=`` argument wins over it. Calling the wrapper
    directly just calls the function.

    Args:
        fn: The function.
        seconds: The limit for each call, > 0.

    Raises:
        ValueError: ``seconds`` is not a positive number.

    Examples:
        >>> import parallelkit
        >>> with parallelkit.Executor("serial") as ex:
        ...     ex.submit(parallelkit.Timed(sum, 5.0), [1, 2]).result()
        3
    """

    __slots__ = ("fn", "seconds")

    def __init__(self, fn: Callable[P, T], seconds: float) -> None:
        if seconds is None:  # pyright: ignore[reportUnnecessaryComparison]
            raise ValueError("Timed needs a number of seconds > 0; to set no limit, do not wrap")
        limit = check_timeout(seconds, "Timed seconds")
        assert limit is not None
        self.fn: Callable[P, T] = fn
        self.seconds: float = limit

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Timed({self.fn!r}, {self.seconds:g})"


def unwrap(fn: Callable[..., T], timeout: float | None) -> tuple[Callable[..., T], float | None]:
    """Split a :class:`Timed` into function and limit; an explicit ``timeout`` wins.

    Raises:
        TypeError: ``fn`` is not callable.
    """
    if isinstance(fn, Timed):
        inner: Timed[..., T] = fn  # pyright: ignore[reportUnknownVariableType]
        return inner.fn, inner.seconds if timeout is None else timeout
    if not callable(fn):
        raise TypeError(f"expected a callable, got {fn!r}")
    return fn, timeout
