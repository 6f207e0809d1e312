"""Property tests: every way of mapping equals the builtin, on every backend.

For any input and any function from a small zoo (builtins, lambdas, closures,
functions that raise for some inputs), the maps
of both faces, :class:`parallelkit.Executor` and :class:`parallelkit.Pool`,
give what the builtin ``map`` / ``itertools.starmap`` gives, for chunk sizes
None, 1, 2 and 7: the same values in the same order (as a multiset for
``imap_unordered``), and where the builtin raises, an exception of the same
type with the same arguments.

A process pool takes a tenth of a second to start, so each test starts one
executor or pool and runs all of its examples on it: ``@given`` decorates an
inner function, which also keeps the per-test fixtures (the backend and the
leak check) out of hypothesis's examples.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parallelkit

#: Enough examples to meet every function and chunk size a few times, few
#: enough that the file runs in seconds on two cores.
PROPERTY = settings(max_examples=25, deadline=None)

#: The type and arguments of an exception: what "raises the same error" compares.
Failure = tuple[type[BaseException], tuple[Any, ...]]
#: The outcome of one call: ``(True, value)`` or ``(False, failure)``.
Outcome = tuple[bool, object]


# -- the function zoo ---------------------------------------------------------------------
#
# Functions go to process workers by reference (builtins and the standard
# library) or by value (lambdas, closures). None is defined at the top level of
# this module: a worker would then import the module, and pytest and
# hypothesis with it, which costs more than all of a test's examples.


def adder(k: int) -> Callable[[int], int]:
    def add(x: int) -> int:
        return x + k

    return add


def divider(k: int) -> Callable[[int], int]:
    def divide(x: int) -> int:
        return k // x  # ZeroDivisionError at 0

    return divide


def rejecting(divisor: int) -> Callable[[int], int]:
    def reject(x: int) -> int:
        if x % divisor == 0:
            raise ValueError(f"{x} is a multiple of {divisor}")
        return x

    return reject


def weighted_sum(k: int) -> Callable[..., int]:
    def weigh(*args: int) -> int:
        return k * sum(args)

    return weigh


UNARY_FUNCTIONS: list[Callable[[int], object]] = [
    lambda x: x,
    lambda x: 2 * x,
    abs,
    str,
    operator.neg,
    math.isqrt,  # ValueError for negative numbers
]
#: Functions of any number of int arguments; ``max`` and ``operator.sub`` raise
#: TypeError for some numbers of arguments.
VARIADIC_FUNCTIONS: list[Callable[..., object]] = [
    lambda *args: args,
    lambda *args: sum(args),
    max,
    operator.sub,
]

unary_functions = st.one_of(
    st.sampled_from(UNARY_FUNCTIONS),
    st.builds(adder, st.integers(-5, 5)),
    st.builds(divider, st.integers(-100, 100)),
    st.builds(rejecting, st.integers(2, 4)),
)
variadic_functions = st.one_of(
    st.sampled_from(VARIADIC_FUNCTIONS), st.builds(weighted_sum, st.integers(-5, 5))
)
int_lists = st.lists(st.integers(), max_size=20)
tuple_lists = st.lists(st.lists(st.integers(), max_size=3).map(tuple), max_size=20)
chunksizes = st.sampled_from([None, 1, 2, 7])
#: Give a lazy map the list itself (known length) or an iterator over it (unknown).
as_iterator = st.booleans()
#: No time limit, or one no task comes near: either way the results are the same.
generous_limits = st.sampled_from([None, 30.0])


# -- the models ---------------------------------------------------------------------------


def failure(exc: BaseException) -> Failure:
    return (type(exc), exc.args)


def call(fn: Callable[..., object], *args: object) -> Outcome:
    try:
        return (True, fn(*args))
    except Exception as exc:
        return (False, failure(exc))


def until_first_error(results: Iterable[object]) -> tuple[list[object], Failure | None]:
    """Values up to the first exception, and that exception: what ``list(map(...))`` sees."""
    values: list[object] = []
    iterator = iter(results)
    while True:
        try:
            value = next(iterator)
        except StopIteration:
            return values, None
        except Exception as exc:
            return values, failure(exc)
        values.append(value)


def every_outcome(results: Iterator[object], count: int) -> list[Outcome]:
    """Drain a ResultIterator, which may be advanced past a task's exception."""
    outcomes: list[Outcome] = []
    for _ in range(count + 1):
        try:
            outcomes.append((True, next(results)))
        except StopIteration:
            return outcomes
        except Exception as exc:
            outcomes.append((False, failure(exc)))
    raise AssertionError(f"more than {count} results: {outcomes}")


def source(items: list[Any], lazy: bool) -> Iterable[Any]:
    return iter(items) if lazy else items


def breaking(items: list[Any], after: int) -> Iterator[Any]:
    """Yield the first ``after`` items, then fail as a broken input would."""
    yield from items[:after]
    raise LookupError(f"the input broke after {after} items")


def input_broke(after: int) -> Outcome:
    """The outcome of reading past the end of ``breaking(items, after)``."""
    return (False, (LookupError, (f"the input broke after {after} items",)))


def assert_whole_list(
    run: Callable[[], list[Any]], expected: list[Outcome], *, first_error: bool
) -> None:
    """Check a map that returns a list (or raises) against per-item outcomes.

    The list equals the builtin's. Where some call raises, the map raises one
    of those errors: the first one in input order when ``first_error`` (the
    serial backend runs chunks in order), else whichever chunk failed first,
    as ``multiprocessing.Pool.map`` does.
    """
    errors = [result for ok, result in expected if not ok]
    try:
        got = run()
    except Exception as exc:
        assert errors, f"raised {exc!r} though every call succeeds"
        if first_error:
            assert failure(exc) == errors[0]
        else:
            assert failure(exc) in errors
    else:
        assert not errors, f"returned {got!r} though a call raises {errors[0]}"
        assert got == [value for _, value in expected]


# -- Executor -----------------------------------------------------------------------------


def test_executor_map_equals_builtin_map(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes, as_iterator, generous_limits)
        def check(
            fn: Callable[[int], object],
            xs: list[int],
            chunksize: int | None,
            lazy: bool,
            timeout: float | None,
        ) -> None:
            results = ex.map(fn, source(xs, lazy), timeout=timeout, chunksize=chunksize)
            assert until_first_error(results) == until_first_error(map(fn, xs))
            assert list(results) == []  # it ends after an error, like concurrent.futures

        check()


def test_executor_map_of_breaking_input_equals_builtin_map(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(unary_functions, int_lists, st.integers(0, 20), chunksizes)
        def check(
            fn: Callable[[int], object], xs: list[int], after: int, chunksize: int | None
        ) -> None:
            results = ex.map(fn, breaking(xs, after), chunksize=chunksize)
            assert until_first_error(results) == until_first_error(map(fn, breaking(xs, after)))

        check()


def test_executor_map_of_several_iterables_equals_builtin_map(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(
            variadic_functions,
            st.lists(st.lists(st.integers(), max_size=12), min_size=1, max_size=3),
            st.booleans(),
            chunksizes,
        )
        def check(
            fn: Callable[..., object], xss: list[list[int]], endless: bool, chunksize: int | None
        ) -> None:
            """The shortest iterable wins, also against an endless one."""

            def iterables() -> list[Iterable[int]]:
                return [*xss, itertools.count()] if endless else [*xss]

            results = ex.map(fn, *iterables(), chunksize=chunksize)
            assert until_first_error(results) == until_first_error(map(fn, *iterables()))

        check()


def test_executor_imap_equals_builtin_map(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes, as_iterator, generous_limits, st.booleans())
        def check(
            fn: Callable[[int], object],
            xs: list[int],
            chunksize: int | None,
            lazy: bool,
            task_timeout: float | None,
            timed: bool,
        ) -> None:
            task = parallelkit.Timed(fn, 30.0) if timed else fn
            results = ex.imap(task, source(xs, lazy), chunksize, task_timeout=task_timeout)
            assert every_outcome(results, len(xs)) == [call(fn, x) for x in xs]

        check()


def test_executor_imap_of_breaking_input_ends_with_its_error(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(unary_functions, int_lists, st.integers(0, 20), chunksizes)
        def check(
            fn: Callable[[int], object], xs: list[int], after: int, chunksize: int | None
        ) -> None:
            results = ex.imap(fn, breaking(xs, after), chunksize)
            expected = [call(fn, x) for x in xs[:after]]
            expected.append(input_broke(after))
            assert every_outcome(results, len(xs) + 1) == expected

        check()


def test_executor_imap_unordered_equals_builtin_map_as_multiset(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes, as_iterator)
        def check(
            fn: Callable[[int], object], xs: list[int], chunksize: int | None, lazy: bool
        ) -> None:
            results = ex.imap_unordered(fn, source(xs, lazy), chunksize)
            got = Counter(every_outcome(results, len(xs)))
            assert got == Counter(call(fn, x) for x in xs)

        check()


def test_executor_starmap_equals_builtin_starmap(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(variadic_functions, tuple_lists, chunksizes, as_iterator)
        def check(
            fn: Callable[..., object],
            xs: list[tuple[int, ...]],
            chunksize: int | None,
            lazy: bool,
        ) -> None:
            results = ex.starmap(fn, source(xs, lazy), chunksize)
            assert every_outcome(results, len(xs)) == [call(fn, *x) for x in xs]

        check()


def test_executor_submit_equals_direct_call(backend: str) -> None:
    with parallelkit.Executor(workers=2) as ex:

        @PROPERTY
        @given(unary_functions, st.lists(st.integers(), max_size=8))
        def check(fn: Callable[[int], object], xs: list[int]) -> None:
            futures = [ex.submit(fn, x) for x in xs]
            assert [call(future.result) for future in futures] == [call(fn, x) for x in xs]

        check()


# -- Pool ---------------------------------------------------------------------------------


def test_pool_map_equals_builtin_map(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes, generous_limits)
        def check(
            fn: Callable[[int], object],
            xs: list[int],
            chunksize: int | None,
            task_timeout: float | None,
        ) -> None:
            assert_whole_list(
                lambda: pool.map(fn, xs, chunksize, task_timeout=task_timeout),
                [call(fn, x) for x in xs],
                first_error=backend == "serial",
            )

        check()


def test_pool_map_async_equals_builtin_map(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes)
        def check(fn: Callable[[int], object], xs: list[int], chunksize: int | None) -> None:
            assert_whole_list(
                lambda: pool.map_async(fn, xs, chunksize).get(),
                [call(fn, x) for x in xs],
                first_error=backend == "serial",
            )

        check()


def test_pool_imap_equals_builtin_map(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes, as_iterator)
        def check(
            fn: Callable[[int], object], xs: list[int], chunksize: int | None, lazy: bool
        ) -> None:
            results = pool.imap(fn, source(xs, lazy), chunksize)
            assert every_outcome(results, len(xs)) == [call(fn, x) for x in xs]

        check()


def test_pool_imap_unordered_equals_builtin_map_as_multiset(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes, as_iterator)
        def check(
            fn: Callable[[int], object], xs: list[int], chunksize: int | None, lazy: bool
        ) -> None:
            results = pool.imap_unordered(fn, source(xs, lazy), chunksize)
            got = Counter(every_outcome(results, len(xs)))
            assert got == Counter(call(fn, x) for x in xs)

        check()


def test_pool_imap_unordered_of_breaking_input_ends_with_its_error(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(unary_functions, int_lists, st.integers(0, 20), chunksizes)
        def check(
            fn: Callable[[int], object], xs: list[int], after: int, chunksize: int | None
        ) -> None:
            results = pool.imap_unordered(fn, breaking(xs, after), chunksize)
            *items, last = every_outcome(results, len(xs) + 1)
            assert Counter(items) == Counter(call(fn, x) for x in xs[:after])
            assert last == input_broke(after)

        check()


def test_pool_starmap_equals_builtin_starmap(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(variadic_functions, tuple_lists, chunksizes)
        def check(
            fn: Callable[..., object], xs: list[tuple[int, ...]], chunksize: int | None
        ) -> None:
            assert_whole_list(
                lambda: pool.starmap(fn, xs, chunksize),
                [call(fn, *x) for x in xs],
                first_error=backend == "serial",
            )

        check()


def test_pool_starmap_async_equals_builtin_starmap(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(variadic_functions, tuple_lists, chunksizes)
        def check(
            fn: Callable[..., object], xs: list[tuple[int, ...]], chunksize: int | None
        ) -> None:
            assert_whole_list(
                lambda: pool.starmap_async(fn, xs, chunksize).get(),
                [call(fn, *x) for x in xs],
                first_error=backend == "serial",
            )

        check()


def test_pool_apply_async_equals_direct_call(backend: str) -> None:
    with parallelkit.Pool(2) as pool:

        @PROPERTY
        @given(unary_functions, st.lists(st.integers(), max_size=8))
        def check(fn: Callable[[int], object], xs: list[int]) -> None:
            pending = [pool.apply_async(fn, (x,)) for x in xs]
            assert [call(result.get) for result in pending] == [call(fn, x) for x in xs]

        check()


# -- check_pickle -------------------------------------------------------------------------

in_process_backends = pytest.mark.parametrize("backend_name", ["serial", "thread"])


@in_process_backends
def test_check_pickle_executor_map_equals_builtin_map(backend_name: str) -> None:
    with parallelkit.Executor(backend_name, 2, check_pickle=True) as ex:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes)
        def check(fn: Callable[[int], object], xs: list[int], chunksize: int | None) -> None:
            results = ex.map(fn, xs, chunksize=chunksize)
            assert until_first_error(results) == until_first_error(map(fn, xs))

        check()


@in_process_backends
def test_check_pickle_executor_starmap_equals_builtin_starmap(backend_name: str) -> None:
    with parallelkit.Executor(backend_name, 2, check_pickle=True) as ex:

        @PROPERTY
        @given(variadic_functions, tuple_lists, chunksizes)
        def check(
            fn: Callable[..., object], xs: list[tuple[int, ...]], chunksize: int | None
        ) -> None:
            results = ex.starmap(fn, xs, chunksize)
            assert every_outcome(results, len(xs)) == [call(fn, *x) for x in xs]

        check()


@in_process_backends
def test_check_pickle_pool_map_equals_builtin_map(backend_name: str) -> None:
    with parallelkit.Pool(2, backend=backend_name, check_pickle=True) as pool:

        @PROPERTY
        @given(unary_functions, int_lists, chunksizes)
        def check(fn: Callable[[int], object], xs: list[int], chunksize: int | None) -> None:
            assert_whole_list(
                lambda: pool.map(fn, xs, chunksize),
                [call(fn, x) for x in xs],
                first_error=backend_name == "serial",
            )

        check()
