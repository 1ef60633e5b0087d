"""JSON from strangers' files, parsed in bounded memory and depth.

A byte cap alone does not bound what ``json.loads`` allocates: 32 MB of ``[{},{},...]`` become
~10 million dicts (~700 MB), and 200,000 nested brackets end in a ``RecursionError``.  Before
parsing, :func:`loads` scans the text once (vectorised: strings blanked by one regular
expression, brackets counted with numpy) and refuses a text that nests deeper than
``max_depth`` or opens more than ``max_containers`` objects and arrays -- each refusal a
:class:`~musicfw.core.errors.ConfigError` naming the file.  The scan costs ~0.1 s per 10 MB.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from musicfw.core.errors import ConfigError

#: a JSON string (its escapes included); blanked before brackets are counted
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
#: defaults: a musicfw config or tokenizer file nests < 15 levels; a MidiTok BPE state of a
#: 30k vocabulary has ~30k containers
MAX_DEPTH = 64
MAX_CONTAINERS = 1_000_000


def structure(data: bytes) -> tuple[int, int]:
    """``(deepest nesting, number of objects and arrays)`` of a JSON text (strings ignored)."""
    import numpy as np

    skeleton = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    step = np.zeros(skeleton.shape, dtype=np.int8)
    opening = (skeleton == ord("{")) | (skeleton == ord("["))
    step[opening] = 1
    step[(skeleton == ord("}")) | (skeleton == ord("]"))] = -1
    if not step.any():
        return 0, 0
    depth = int(np.cumsum(step, dtype=np.int64).max())
    return depth, int(opening.sum())


def loads(data: bytes | str, where: Any, *, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS) -> Any:
    """``json.loads(data)`` after checking its nesting and container count; every failure is a
    ConfigError naming ``where`` (a file, or a file and key)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth, containers = structure(raw)
    if depth > max_depth:
        raise ConfigError(f"{where} nests {depth:,} levels deep; at most {max_depth} are read.")
    if containers > max_containers:
        raise ConfigError(f"{where} holds {containers:,} JSON objects/arrays; at most {max_containers:,} are read.")
    try:
        return json.loads(raw)
    except RecursionError:  # the scan above counts real brackets; kept for a malformed text
        raise ConfigError(f"{where} nests too deeply to be read.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}.") from None


def read(path: Path, what: str, limit: int, *, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS) -> Any:
    """The JSON in the plain file ``path`` (``what``: its role, for errors), refused above
    ``limit`` bytes before it is read."""
    if not path.is_file():
        raise ConfigError(f"{path} ({what}) is missing or not a file.")
    size = path.stat().st_size
    if size > limit:
        raise ConfigError(f"{path} is {size:,} bytes, more than the {limit:,} allowed for {what}.")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we looked
        raise ConfigError(f"{path} is more than the {limit:,} bytes allowed for {what}.")
    return loads(data, f"{path} ({what})", max_depth=max_depth, max_containers=max_containers)
