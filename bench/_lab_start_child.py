"""Run by ``bench_lab_start.py`` in a fresh interpreter: where does a lab's start time go?

Prints one JSON line: seconds to import the lab, for a cold ``Lab.start()`` (moto is
imported inside it), ``stop()``, and a second, warm ``start()``. Nothing is imported
before the clock starts except the standard library, so the import figure is honest.
"""

from __future__ import annotations

import json
import time


def measure() -> dict[str, float]:
    """Time the lab's imports, a cold start, a stop and a warm start."""
    started = time.perf_counter()
    from chaos_dynamo.config import load_topology
    from chaos_dynamo.lab.lab import Lab

    imported = time.perf_counter()
    lab = Lab(load_topology(None))
    lab.start()
    cold = time.perf_counter()
    lab.stop()
    stopped = time.perf_counter()
    lab = Lab(load_topology(None))
    lab.start()
    warm = time.perf_counter()
    lab.stop()
    return {"import_s": imported - started, "start_s": cold - imported,
            "stop_s": stopped - cold, "warm_start_s": warm - stopped}


if __name__ == "__main__":
    print(json.dumps(measure()))
