"""Reading the files a configuration names: regular files only, of a bounded size.

A FIFO, a device or a directory given as a `*_file` would block the read or never end;
opening with O_NONBLOCK lets us look at what the path is before reading anything.
"""

from __future__ import annotations

import os
import stat

#: the configuration itself may list thousands of targets
MAX_CONFIG_BYTES = 64 * 1024 * 1024
#: a credential is a line; a certificate bundle a few kilobytes
MAX_CREDENTIAL_BYTES = 1024 * 1024


class FileProblem(Exception):
    """Why a file could not be read, in words for the user (no traceback)."""


def read_text_file(path: str, *, max_bytes: int) -> str:
    """The UTF-8 text of the regular file at `path`; FileProblem otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"cannot read {path}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1024 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise FileProblem(f"cannot read {path}: larger than {max_bytes // 1024} KiB")
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"cannot read {path}: not UTF-8 text") from None
