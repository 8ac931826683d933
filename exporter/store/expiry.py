"""When values go stale: a heap of deadlines, so that checking costs nothing while none is due.

A row (a target, or a source's app-level values: key None) is scheduled when a success
lands, unless it already waits in the heap.  `due(now)` hands back the rows whose deadline
has passed; the store then checks each against what holds now (a later success, a longer
`stale_after`, a row removed meanwhile) and drops its values, schedules it again or forgets
it.  A row has at most one live entry; a replaced one is skipped when it comes up.
"""

from __future__ import annotations

import heapq
import itertools

Row = tuple[str, str | None]  # (source, target key), key None for the app-level values


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, str | None]] = []
        self._tokens: dict[Row, int] = {}  # the live entry of each scheduled row
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._tokens)

    def pending(self, row: Row) -> bool:
        return row in self._tokens

    def schedule(self, row: Row, deadline: float) -> None:
        """Check `row` at `deadline` (replacing any deadline it had)."""
        token = next(self._counter)
        self._tokens[row] = token
        heapq.heappush(self._heap, (deadline, token, *row))
        if len(self._heap) > 2 * len(self._tokens) + 1024:  # drop the replaced entries
            self._heap = [e for e in self._heap if self._tokens.get((e[2], e[3])) == e[1]]
            heapq.heapify(self._heap)

    def cancel(self, row: Row) -> None:
        """Forget the row (removed): its entry is skipped when it comes up."""
        self._tokens.pop(row, None)

    def due(self, now: float) -> list[Row]:
        """The rows whose deadline is `now` or earlier, no longer scheduled."""
        out: list[Row] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token, source, key = heapq.heappop(heap)
            row = (source, key)
            if self._tokens.get(row) == token:
                del self._tokens[row]
                out.append(row)
        return out
