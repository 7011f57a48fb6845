"""chaos-dynamo's benchmark suite: speed and size targets, measured side by side.

Run all with ``make bench`` (``python bench/run.py``); each ``bench_*.py`` also runs alone.
"""
