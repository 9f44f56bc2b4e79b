"""Latency: timing implementations honestly in fresh worker processes — the Timer engine, grids,
plans, the worker and its jobs, statistics over raw samples, and the pytest-benchmark export."""
