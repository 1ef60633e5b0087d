"""Attribute controls shared by the tokenizers that write them (REMI per bar, tracks per voice
and segment): the four config keys, their checks, and fitting the boundaries to data.

The measuring and the quantising are the music library's (:mod:`musicfw.music.controls`); this
module holds only what a tokenizer does with its ``controls`` / ``control_levels`` /
``control_bins`` / ``control_binning`` keys, so both tokenizers read them the same way.
numpy only: cheap to import.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from musicfw.music.controls import ATTRIBUTES, default_bins, fit_bins


class ControlSetup:
    """The checked control keys of one tokenizer: ``controls`` (the attributes with tokens, in
    stream order), ``bins`` (per attribute, its ``levels - 1`` boundaries: given, or the fixed
    defaults until fitted), ``unfitted`` (attributes ``control_binning: fit`` has still to fit)
    and ``levels``.  ConfigError (naming ``prefix`` and the key) for anything malformed."""

    def __init__(self, prefix: str, config: Any):
        from musicfw.core.errors import ConfigError

        ctrl = [str(a) for a in (config.controls or [])]
        if len(set(ctrl)) != len(ctrl):
            raise ConfigError(f"{prefix}: tokenizer.controls lists an attribute twice: {ctrl}.")
        for a in ctrl:
            if a not in ATTRIBUTES:
                raise ConfigError(f"{prefix}: tokenizer.controls: unknown attribute {a!r}; allowed: {', '.join(ATTRIBUTES)}.")
        levels = int(config.control_levels)
        given = dict(config.control_bins or {})
        for a in given:
            if a not in ctrl:
                raise ConfigError(
                    f"{prefix}: tokenizer.control_bins has boundaries for {a!r}, which is not in tokenizer.controls ({ctrl})."
                )
        self.prefix = prefix
        self.levels = levels
        self.controls: tuple[str, ...] = tuple(ctrl)
        self.unfitted: tuple[str, ...] = ()
        if str(config.control_binning) == "fit":
            self.unfitted = tuple(a for a in ctrl if a not in given)
        self.bins: dict[str, list[float]] = {}
        for a in ctrl:
            self.bins[a] = _checked_bins(prefix, a, given[a], levels) if a in given else default_bins(a, levels)

    def fit(self, config: Any, attributes: Callable[[Any], dict[str, np.ndarray]], scores: Iterable[Any],
            max_units: int, unit: str) -> bool:
        """Fit the unfitted attributes' boundaries to the values ``attributes(score)`` gives
        (one per ``unit``: a bar, a voice's segment) over ``scores``, at most ``max_units``
        of them; store them in ``config.control_bins`` (so ``save`` writes them) and here.  A
        piece ``attributes`` refuses is skipped (the token cache skips it too).  False when
        there is nothing to fit (``scores`` not read); DataError when no unit was found."""
        if not self.unfitted:
            return False
        from musicfw.core.errors import DataError

        todo = self.unfitted
        values: dict[str, list[np.ndarray]] = {a: [] for a in todo}
        seen = 0
        for score in scores:
            if seen >= max_units:
                break
            try:
                att = attributes(score)
            except Exception:  # noqa: BLE001 - a piece encode refuses is not in the token cache either
                continue
            take = min(len(att[todo[0]]), max_units - seen)
            seen += take
            for a in todo:
                values[a].append(np.asarray(att[a])[:take])
        if seen == 0:
            raise DataError(
                f"{self.prefix}: tokenizer.control_binning: fit found no {unit} in the training split to fit the "
                "control boundaries to; give tokenizer.control_bins or use control_binning: fixed."
            )
        fitted = {a: fit_bins(np.concatenate(values[a]), self.levels) for a in todo}
        config.control_bins = {**dict(config.control_bins or {}), **fitted}
        self.bins.update(fitted)
        self.unfitted = ()
        return True


def _checked_bins(prefix: str, a: str, raw: Any, levels: int) -> list[float]:
    from musicfw.core.errors import ConfigError

    if not hasattr(raw, "__len__") or len(raw) != levels - 1:  # sized before anything is read from it
        raise ConfigError(
            f"{prefix}: tokenizer.control_bins.{a} must be a list of {levels - 1} increasing numbers "
            f"(control_levels - 1), got {type(raw).__name__} of "
            f"{len(raw) if hasattr(raw, '__len__') else 'no'} items."
        )
    try:
        b = [float(x) for x in list(raw)]
    except (TypeError, ValueError):
        raise ConfigError(f"{prefix}: tokenizer.control_bins.{a} must hold numbers, got {list(raw)!r}.") from None
    if len(b) != levels - 1 or not np.all(np.isfinite(b)) or np.any(np.diff(b) <= 0):
        raise ConfigError(
            f"{prefix}: tokenizer.control_bins.{a} must be {levels - 1} increasing finite numbers "
            f"(control_levels - 1), got {b[:40]}."
        )
    return b
