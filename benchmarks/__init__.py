"""Benchmarks of the media engine: ``python -m benchmarks`` (see ``benchmarks/README.md``)."""
