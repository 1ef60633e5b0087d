"""Writing a file whole or not at all: the one atomic-write helper.

A file is written under a temporary name in its own folder and then moved onto its real name
with :func:`os.replace` (atomic within one file system): a reader, or a process killed half-way,
sees the old file or the new one, never half of one.  The temporary name starts with a dot and
carries a random part, so concurrent writers of the same file (two preparations of one cache)
never share a temporary file, and folder listings that skip dot-files skip it.  Nothing is
fsync'ed (as before this helper): the rename protects against crashes of the process, not
against the machine losing power.

* :func:`atomic_write` writes text or bytes;
* :func:`atomic_path` gives the temporary path to a writer that wants a file name (``torch.save``,
  safetensors, pyarrow, zipfile, Lightning's ``save_checkpoint``) and moves the file into place
  when the ``with`` block ends without an error (and removes it when the block fails).
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write"]


@contextmanager
def atomic_path(path: str | os.PathLike, *, unique: bool = True, publish: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends
    without an error, and is removed when the block (or the rename) fails.

    ``unique=False``: the temporary name has no random part, so that several processes that
    write one file together (Lightning's ranks all call ``save_checkpoint`` with one name; a
    sharded strategy writes its shards there) name the same file.  ``publish=False``: this
    process only helps; another one (rank zero) moves the file into place and cleans up.
    """
    path = Path(path)
    suffix = f".{uuid.uuid4().hex[:8]}.tmp" if unique else ".tmp"
    tmp = path.with_name(f".{path.name}{suffix}")
    if not publish:
        yield tmp
        return
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():  # a sharded checkpoint is a folder
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str | None = None) -> Path:
    """Write ``data`` (``str``: as :meth:`Path.write_text` does, in ``encoding``; ``bytes``: as
    they are) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, (bytes, bytearray, memoryview)):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding=encoding)
    return Path(path)
