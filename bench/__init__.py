"""kubetask benchmarks: each figure is measured against a baseline taken in the same run and
printed as a ratio with the raw numbers. `python -m bench` (or `make bench`) runs them all;
they are measurements, not tests, and assert nothing about timings."""
