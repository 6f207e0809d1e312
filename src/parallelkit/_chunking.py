"""How many items go into one chunk when the caller did not say.

- A fixed ``chunksize``: used as given.
- A known length ``n`` (a list, a range...): ``ceil(n / (4 * workers))``, the
  rule ``multiprocessing.Pool.map`` uses: four chunks per worker is enough to
  balance uneven tasks and few enough that tiny tasks run at full speed.
- An unknown length (a generator, ``itertools.count()``): start at one item,
  and after each finished chunk aim for :data:`TARGET_SECONDS` of work per
  chunk from the measured time per item, growing at most :data:`GROWTH`-fold
  with each finished chunk and never above :data:`MAX_UNKNOWN`. Slow tasks
  stay one per chunk, so long uneven work spreads over every worker; tiny
  tasks reach full-size chunks within five round trips, and the bound keeps
  memory flat on endless inputs.
"""

from __future__ import annotations

import math
from typing import Final, final

__all__ = ("ChunkSizer",)

TARGET_SECONDS: Final = 0.02
MAX_UNKNOWN: Final = 16384
#: How much the next chunk of an input of unknown length may grow over the last.
GROWTH: Final = 8


@final
class ChunkSizer:
    """Chooses the size of the next chunk of a map.

    Args:
        chunksize: The caller's chunk size, or None for automatic.
        length: The input's length when known.
        workers: Number of workers.

    Raises:
        ValueError: ``chunksize`` is not a whole number >= 1.
    """

    __slots__ = ("_fixed", "_limit", "_size")

    def __init__(self, chunksize: int | None, length: int | None, workers: int) -> None:
        if chunksize is not None:
            if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
                raise ValueError(
                    f"chunksize must be a whole number >= 1 or None, got {chunksize!r}"
                )
            self._fixed = True
            self._size = chunksize
        elif length is not None:
            self._fixed = True
            self._size = max(1, math.ceil(length / (4 * workers)))
        else:
            self._fixed = False
            self._size = 1
        self._limit = MAX_UNKNOWN

    @property
    def size(self) -> int:
        """The size of the next chunk."""
        return self._size

    def observe(self, count: int, elapsed: float) -> None:
        """Learn from a finished chunk of ``count`` items that took ``elapsed`` seconds."""
        if self._fixed or count <= 0:
            return
        per_item = elapsed / count
        ideal = self._limit if per_item <= 0 else int(TARGET_SECONDS / per_item)
        self._size = max(1, min(ideal, self._size * GROWTH, self._limit))
