"""Benchmarks of the media engine: ``python -m benchmarks`` (see ``benchmarks/README.md``)."""

import os

# Benchmark Devices play and capture what they are given; none opens the machine's sound
# card by default (the voice section's PulseAudio loop selects its devices itself).
os.environ.setdefault("SOFTPHONE_REAL_DEVICES", "0")
