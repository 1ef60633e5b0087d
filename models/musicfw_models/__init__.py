"""musicfw's pretrained models: exported model folders plus zoo.json (their files' sha256, task,
licence, held-out metrics, training commands).  musicfw finds them through the entry point
group ``musicfw.pretrained`` (musicfw/engine/zoo.py); ``musicfw models`` lists them."""

from pathlib import Path


def root() -> Path:
    """The folder holding zoo.json and one folder per model."""
    return Path(__file__).resolve().parent
