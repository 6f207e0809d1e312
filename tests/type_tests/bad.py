# Misuse of the public API that mypy and pyright must both report.
#
# Only type-checked, never run (tests/test_type_checkers.py). Lines ending in
# "# ok" are set-up and must pass; every other line that is not blank or a
# comment is one self-contained statement that both checkers must flag.

from __future__ import annotations  # ok

from concurrent.futures import Future  # ok
from typing import TYPE_CHECKING  # ok

import parallelkit  # ok
import parallelkit.testing  # ok

if TYPE_CHECKING:  # ok
    from typing_extensions import assert_type  # ok


def to_int(x: int) -> int:  # ok
    return x  # ok


def add(a: int, b: int) -> int:  # ok
    return a + b  # ok


ex = parallelkit.Executor("serial")  # ok
pool = parallelkit.Pool(backend="serial")  # ok

# Executor.submit keeps the function's signature.
ex.submit(to_int, "x")
ex.submit(to_int)
ex.submit(to_int, 1, 2)
ex.submit(to_int, y=1)
ex.submit(add, 1, c=2)
print(ex.submit(to_int, 1).result() + "s")
print(ex.submit(to_int, 1).result().upper())
assert_type(ex.submit(to_int, 1), Future[str])

# Executor's maps.
ex.map(to_int, 1)
ex.map(to_int, [1], chunksize="2")
ex.map(to_int, [1], timeout="1")
print(next(ex.map(to_int, [1])).upper())
ex.imap(add, [1])
ex.imap(to_int, [1]).next(timeout="1")
print(next(ex.imap(to_int, [1])).upper())
ex.imap_unordered(to_int, [1], task_timeout="1")
ex.starmap(add, 1)
ex.shutdown(cancel=True)

# progress= takes True/False, a callable fn(done, total) or a dict of tqdm options.
ex.map(to_int, [1], progress="yes")
ex.map(to_int, [1], progress=1)
ex.map(to_int, [1], progress=None)
ex.imap(to_int, [1], progress=lambda done: None)
ex.starmap(add, [(1, 2)], progress=to_int)
pool.map(to_int, [1], progress=[True])
pool.map_async(to_int, [1], progress={1: "x"})
pool.imap_unordered(to_int, [1], progress=lambda done, total: done + total)
pool.starmap(add, [(1, 2)], 1, True)

# Executor's constructor.
parallelkit.Executor(workers="2")
parallelkit.Executor(max_workers="4")
parallelkit.Executor(max_workers=2.0)
parallelkit.Executor("thread", 2, "fork")
parallelkit.Executor(check_pickle="yes")
parallelkit.Executor(max_tasks_per_worker=1.5)
parallelkit.Executor(task_timeout="5")
parallelkit.Executor(initializer=1)
parallelkit.Executor(processes=2)
parallelkit.Executor(start_method=1)

# Pool.
pool.map(to_int, 1)
pool.map(add, [1])
print(pool.map(to_int, [1])[0] + "s")
pool.starmap(to_int, [1])
pool.apply(to_int, 1)
print(pool.apply(to_int, (1,)).upper())
print(pool.apply_async(to_int, (1,)).get().upper())
print(pool.map_async(to_int, [1]).get().upper())
pool.apply_async(to_int, (1,), callback=lambda result: result.upper())
pool.map_async(to_int, [1], callback=lambda results: results.upper())
pool.apply_async(to_int, (1,)).get(timeout="1")
pool.imap(to_int, [1]).next(timeout="x")
pool.close(True)
parallelkit.Pool(processes="2")
parallelkit.Pool(2, context="fork")
parallelkit.Pool(2, None, (), None, None, "thread")
parallelkit.Pool(workers=2)

# Timed keeps the function's signature.
parallelkit.Timed(to_int, "5")
parallelkit.Timed(to_int, 5.0)("x")
parallelkit.Timed(add, 5.0)(1, c=2)
print(parallelkit.Timed(to_int, 5.0)(1).upper())
ex.submit(parallelkit.Timed(to_int, 5.0), "x")

# Configuration.
parallelkit.config(backend=1)
parallelkit.config("thread")
parallelkit.config(shared_threshold="1MiB")
parallelkit.current_settings().workers = 3
print(parallelkit.current_settings().workers.upper())


# Final classes, errors and private names.
class MyExecutor(parallelkit.Executor): ...  # fmt: skip


class MyPool(parallelkit.Pool): ...  # fmt: skip


parallelkit.WorkerCrashedError("died")
print(parallelkit.Engine)
print(parallelkit.testing.no_such_helper)
