"""The music library: torch-free music code that plugins and the engine share (the one MIDI
loader and its limits, note arrays, augmentation, set statistics, audio rendering)."""
