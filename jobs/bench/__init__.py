"""Benchmarks: the figures in README, MODEL.md and docs/ come from these. Not installed with the package and never
imported by it; run from a checkout: `python -m jobs.bench.<name>`."""
