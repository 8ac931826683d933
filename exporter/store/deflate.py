"""One gzip member assembled from independently compressed pieces.

Each piece of text is compressed on its own into a raw-deflate *segment* that ends with a
full flush: byte-aligned, not final, with no reference to what came before.  Segments in
any order therefore concatenate into a valid deflate stream; `gzip_member` wraps them into
a single gzip member:

    10-byte header | segment | segment | ... | final empty block (03 00) | CRC32 | ISIZE

It has to be one member: some clients (curl --compressed among them) decode only the first
member of a multi-member body.  The CRC32 of the whole is combined from the segments' CRCs
with zlib's `crc32_combine`, which Python's zlib does not expose: it is called from the
system libz through ctypes, with a pure-Python fallback (zlib's own algorithm) where libz
cannot be loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import NamedTuple

#: gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: a final, empty block with fixed Huffman codes: ends the deflate stream
FINAL_BLOCK = b"\x03\x00"


class Segment(NamedTuple):
    """Raw deflate data of some text, with the CRC32 and length of that text."""

    data: bytes
    crc: int
    size: int


EMPTY = Segment(b"", 0, 0)


def deflate(raw: bytes, level: int) -> Segment:
    """`raw` compressed into an independent, byte-aligned, non-final segment."""
    if not raw:
        return EMPTY
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return Segment(c.compress(raw) + c.flush(zlib.Z_FULL_FLUSH), zlib.crc32(raw), len(raw))


# -- crc32_combine ----------------------------------------------------------------------------

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a times b modulo the CRC-32 polynomial (bit-reflected), as zlib's multmodp."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _x2n_table()


@functools.lru_cache(maxsize=4096)
def _x8nmodp(n: int) -> int:
    """x^(8n) modulo the polynomial: the operator that shifts a CRC over n zero bytes."""
    p = 1 << 31  # x^0
    k = 3
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def crc32_combine_py(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32 of A+B from crc1 = CRC32(A), crc2 = CRC32(B) and len2 = len(B), in Python."""
    return _multmodp(_x8nmodp(len2), crc1) ^ (crc2 & 0xFFFFFFFF)


def _libz_combine() -> Callable[[int, int, int], int] | None:
    path = ctypes.util.find_library("z")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        fn = lib.crc32_combine
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_ulong
    fn.argtypes = (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long)
    if fn(zlib.crc32(b"ab"), zlib.crc32(b"cd"), 2) != zlib.crc32(b"abcd"):
        return None

    def combine(crc1: int, crc2: int, len2: int) -> int:
        return int(fn(crc1, crc2, len2)) & 0xFFFFFFFF

    return combine


#: the system libz's crc32_combine when it can be loaded, else None
crc32_combine_libz = _libz_combine()
crc32_combine: Callable[[int, int, int], int] = crc32_combine_libz or crc32_combine_py


def concat(segments: Iterable[Segment]) -> Segment:
    """The segments one after the other: their data joined, the CRC and length of the whole."""
    datas: list[bytes] = []
    crc = size = 0
    for seg in segments:
        if seg.size:
            datas.append(seg.data)
            crc = crc32_combine(crc, seg.crc, seg.size)
            size += seg.size
    return Segment(b"".join(datas), crc, size)


def trailer(crc: int, size: int) -> bytes:
    """What follows the last segment: the final empty block, CRC32 and ISIZE (length mod 2^32)."""
    return FINAL_BLOCK + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
