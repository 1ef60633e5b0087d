"""Built-in export format: ``safetensors``, the folder ``musicfw generate --model`` and
``musicfw.load_pretrained`` read (see :mod:`musicfw.engine.pretrained`), registered through
``musicfw_register_exporters`` like a third party's format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musicfw.core.export import ExportFormat, ExportSource
from musicfw.core.hookspecs import hookimpl


class Safetensors(ExportFormat):
    """A self-describing folder: model.safetensors, config.json, tokenizer.json, vocab.json and a
    Hugging Face Hub model card (loads with musicfw generate --model; no pickle)."""

    name = "safetensors"

    def export(self, source: ExportSource, out_dir: Path) -> None:
        from musicfw.engine.pretrained import write_folder

        write_folder(source, out_dir)


@hookimpl
def musicfw_register_exporters(registry: Any) -> None:
    registry.add(Safetensors)
