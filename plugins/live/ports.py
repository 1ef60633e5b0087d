"""MIDI ports through mido and python-rtmidi (the ``live`` extra), with one clear message when
the backend or a port is missing."""

from __future__ import annotations

from typing import Any

from musicfw.core.errors import UserError

INSTALL = ('pip install "musicfw[live]" (mido and python-rtmidi; on Debian, if python-rtmidi has to be '
           'built: apt-get install libasound2-dev)')


def _mido() -> Any:
    try:
        import mido
        import rtmidi  # noqa: F401  (mido's default backend)
    except ImportError as exc:
        raise UserError(f"musicfw play needs a MIDI backend ({exc.name} is not installed): {INSTALL}") from None
    return mido


def _names(mido: Any, output: bool) -> list[str]:
    try:
        return list(mido.get_output_names() if output else mido.get_input_names())
    except Exception as exc:  # rtmidi raises its own SystemError when ALSA/CoreMIDI is absent
        raise UserError(
            f"No MIDI system is available ({exc}). On Linux the ALSA sequencer (/dev/snd/seq, module "
            f"snd-seq) must exist; in a container pass the sound device in. Backend: {INSTALL}"
        ) from None


def open_port(name: str, output: bool) -> Any:
    """``name``: a port's name as listed, or ``virtual:NAME`` for a new virtual port other
    programs (a DAW) can connect to, where the backend supports it."""
    mido = _mido()
    flag = "--out" if output else "--in"
    opener = mido.open_output if output else mido.open_input
    if name.startswith("virtual:"):
        label = name[len("virtual:"):] or "musicfw"
        try:
            return opener(label, virtual=True)
        except NotImplementedError:
            raise UserError(f"{flag} {name}: this MIDI backend cannot open virtual ports (Windows cannot); "
                            "use a loopback driver (loopMIDI) and give its port name.") from None
        except Exception as exc:
            raise UserError(f"{flag} {name}: cannot open a virtual MIDI port ({exc}). On Linux the ALSA "
                            f"sequencer (/dev/snd/seq) must exist. Backend: {INSTALL}") from None
    names = _names(mido, output)
    if name not in names:
        listed = ", ".join(repr(n) for n in names) if names else "none"
        raise UserError(f"{flag} {name!r}: no such MIDI {'output' if output else 'input'} port. Available: "
                        f"{listed}; or virtual:NAME to open a virtual port.")
    return opener(name)
