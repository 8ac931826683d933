"""The rendered lines of every row, cached in blocks so that a scrape only redoes what changed.

A *row* is a target, or a source's app-level values.  Each row has a fixed *slot* (reused
after it is released) and, per family, the bytes of its sample lines (`set`, called when a
poll lands).  Slots are grouped in blocks of `block_slots`; per (family, block) the table
caches the joined lines.  A `set` that changes a row's bytes in a family marks only that
(family, block) dirty: an unchanged line marks nothing.

On a scrape, `refresh` rebuilds the dirty blocks (a join of at most `block_slots` lines
each).  `parts(family)` are the family's non-empty chunks of `chunk_blocks` blocks, joined
when a plain scrape asks for them and one of their blocks changed; they are sent as they
are (whole families would be a big copy for a small change, single blocks many small
writes).

For gzip, each (family, block) is compressed into its own deflate segment
(`exporter.store.deflate`) once per change, and a family's segments are joined into one
segment of the whole family: `gzip_body` does it when a scrape needs it; `gzip_jobs`,
`compress` and `gzip_install` let a worker thread do it (`MetricsCache.scrape_async`,
`MetricsCache.keep_warm`).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.store.deflate import EMPTY, Segment, concat, deflate

#: slots per block: a block of 256 targets' lines of one family is about 30 KB
BLOCK_SLOTS = 256
#: blocks joined into one part for sending (about 240 KB): fewer writes, little copying
CHUNK_BLOCKS = 8
#: zlib level of the segments: on these lines 1 is ~2.5x faster than 5 for ~10% more bytes
GZIP_LEVEL = 1


class _Family:
    """One family's lines, blocks and segments."""

    __slots__ = (
        "blocks",
        "chunks",
        "dirty",
        "gzip",
        "lines",
        "parts",
        "present",
        "segments",
        "stale_chunks",
        "version",
    )

    def __init__(self) -> None:
        #: per slot: the row's lines (b"" when it has none)
        self.lines: list[bytes] = []
        #: per block: the joined lines of its slots
        self.blocks: list[bytes] = []
        #: per block: its deflate segment, None while not compressed since it changed
        self.segments: list[Segment | None] = []
        #: the blocks whose bytes are out of date
        self.dirty: set[int] = set()
        #: whether any block has lines, as of the last refresh
        self.present = False
        #: per chunk of `chunk_blocks` blocks: their bytes joined
        self.chunks: list[bytes] = []
        #: the chunks whose blocks changed since they were joined
        self.stale_chunks: set[int] = set()
        #: the non-empty chunks, when no chunk is stale
        self.parts: tuple[bytes, ...] = ()
        #: the segments of all blocks joined; None until compressed since the last change
        self.gzip: Segment | None = EMPTY
        #: bumped by every refresh that rebuilt one of its blocks
        self.version = 0


@dataclass(frozen=True)
class GzipJob:
    """A family's blocks and their segments (None: to compress) at one version of it."""

    family: int
    version: int
    blocks: tuple[bytes, ...]
    segments: tuple[Segment | None, ...]

    @property
    def pending(self) -> int:
        """Bytes to compress."""
        return sum(len(raw) for raw, seg in zip(self.blocks, self.segments, strict=True) if seg is None)


@dataclass(frozen=True)
class GzipResult:
    job: GzipJob
    segments: tuple[Segment, ...]
    whole: Segment


def compress(job: GzipJob, level: int) -> GzipResult:
    """Compress what the job lacks and join the family: pure, so it can run in a thread."""
    segments = tuple(
        seg if seg is not None else deflate(raw, level)
        for raw, seg in zip(job.blocks, job.segments, strict=True)
    )
    return GzipResult(job, segments, concat(segments))


class RowTable:
    def __init__(
        self,
        families: int,
        *,
        block_slots: int = BLOCK_SLOTS,
        chunk_blocks: int = CHUNK_BLOCKS,
        gzip_level: int = GZIP_LEVEL,
    ) -> None:
        if block_slots < 1 or chunk_blocks < 1:
            raise ValueError("block_slots and chunk_blocks must be at least 1")
        self.block_slots = block_slots
        self.chunk_blocks = chunk_blocks
        self.gzip_level = gzip_level
        self._families = [_Family() for _ in range(families)]
        self._slots = 0  # slots ever handed out (capacity)
        self._free: list[int] = []  # released slots, a min-heap: the lowest is reused first
        self._present: list[tuple[int, ...]] = []  # per slot: the families it has lines in
        self._dirty: set[int] = set()  # families with dirty blocks
        #: bumped by every `refresh` that rebuilt something: what a cache of the parts keys on
        self.version = 0
        #: blocks, chunks and families (compressed) rebuilt so far: how much work was done
        self.builds = 0

    @property
    def families(self) -> int:
        return len(self._families)

    # -- rows (the poll path) -------------------------------------------------------------
    def allocate(self) -> int:
        """A free slot for a new row, without lines."""
        if self._free:
            return heapq.heappop(self._free)
        slot = self._slots
        self._slots += 1
        self._present.append(())
        new_block = slot % self.block_slots == 0
        for fam in self._families:
            fam.lines.append(b"")
            if new_block:
                fam.blocks.append(b"")
                fam.segments.append(EMPTY)
                if len(fam.blocks) > len(fam.chunks) * self.chunk_blocks:
                    fam.chunks.append(b"")
        return slot

    def release(self, slot: int) -> None:
        """The row is gone: its lines are dropped and its slot is free for another row."""
        self.set(slot, {})
        heapq.heappush(self._free, slot)

    def set(self, slot: int, lines: Mapping[int, bytes]) -> None:
        """The row's lines now, by family index (a family it has no lines in is absent)."""
        block = slot // self.block_slots
        for f in self._present[slot]:
            if f not in lines:
                self._change(f, slot, block, b"")
        for f, new in lines.items():
            if self._families[f].lines[slot] != new:
                self._change(f, slot, block, new)
        self._present[slot] = tuple(f for f, new in lines.items() if new)

    def _change(self, f: int, slot: int, block: int, new: bytes) -> None:
        fam = self._families[f]
        fam.lines[slot] = new
        fam.dirty.add(block)
        self._dirty.add(f)

    def lines(self, slot: int) -> dict[int, bytes]:
        """The row's lines by family index."""
        return {f: self._families[f].lines[slot] for f in self._present[slot]}

    @property
    def dirty(self) -> bool:
        """Whether a change waits for the next `refresh`."""
        return bool(self._dirty)

    # -- the scrape path ------------------------------------------------------------------
    def refresh(self) -> bool:
        """Rebuild the dirty blocks; whether there were any."""
        if not self._dirty:
            return False
        n, k = self.block_slots, self.chunk_blocks
        for f in self._dirty:
            fam = self._families[f]
            for b in fam.dirty:
                fam.blocks[b] = b"".join(fam.lines[b * n : (b + 1) * n])
                fam.segments[b] = None
                fam.stale_chunks.add(b // k)
            self.builds += len(fam.dirty)
            fam.dirty.clear()
            fam.present = any(fam.blocks)
            fam.gzip = None
            fam.version += 1
        self._dirty.clear()
        self.version += 1
        return True

    def present(self, family: int) -> bool:
        """Whether the family has lines, as of the last `refresh`."""
        return self._families[family].present

    def parts(self, family: int) -> tuple[bytes, ...]:
        """The family's sample lines as of the last `refresh`, in chunks (none: no samples)."""
        fam = self._families[family]
        if fam.stale_chunks:
            k = self.chunk_blocks
            for c in fam.stale_chunks:
                fam.chunks[c] = b"".join(fam.blocks[c * k : (c + 1) * k])
            self.builds += len(fam.stale_chunks)
            fam.stale_chunks.clear()
            fam.parts = tuple(chunk for chunk in fam.chunks if chunk)
        return fam.parts

    def gzip_body(self, family: int) -> tuple[Segment, bool]:
        """The family's lines as of the last `refresh` as one deflate segment, and whether
        anything had to be compressed: only the blocks changed since they were compressed."""
        fam = self._families[family]
        if fam.gzip is not None:
            return fam.gzip, False
        result = compress(self._job(family), self.gzip_level)
        self.builds += 1
        self.gzip_install(result)
        assert fam.gzip is not None
        return fam.gzip, True

    def _job(self, family: int) -> GzipJob:
        fam = self._families[family]
        return GzipJob(family, fam.version, tuple(fam.blocks), tuple(fam.segments))

    def gzip_jobs(self) -> list[GzipJob]:
        """What `gzip_body` would compress now, family by family (call `refresh` first)."""
        return [self._job(f) for f, fam in enumerate(self._families) if fam.gzip is None]

    def gzip_install(self, result: GzipResult) -> None:
        """Keep what `compress` made of a job, as far as it still holds: all of it if the
        family did not change meanwhile, else the segments of the blocks that did not."""
        job = result.job
        fam = self._families[job.family]
        if fam.version == job.version and len(fam.blocks) == len(job.blocks):
            fam.segments = list(result.segments)
            fam.gzip = result.whole
            return
        for b, raw in enumerate(job.blocks):
            if fam.segments[b] is None and fam.blocks[b] is raw:
                fam.segments[b] = result.segments[b]
