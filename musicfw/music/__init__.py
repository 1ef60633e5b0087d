"""The music library: torch-free music code that plugins and the engine share (the one MIDI
loader and its limits, the one note-array type, the time grid, the one chord vocabulary and
recogniser, augmentation, set statistics, audio rendering)."""
