"""``probes/retry``: every retry measurement of one service, judged, as one JSON verdict.

    probes/retry SERVICE [--endpoint NAME] [--baseline-seconds 10] [--recovery-seconds 10]
                 [--state FILE | --api URL] [--max-amplification 2] [--max-attempts-per-call 4]
                 [--max-herd 3] [--max-dns-storm X] [--min-growth X] [--min-jitter X] ...

Prints ``{"probe": "retry", "ok", "service", "windows", "checks": [...], "measurements":
{...}, "notes": [...]}`` and exits 0 when every check passed, 1 when one failed (or could not
be computed: a check that was asked for and has no number fails), 2 for a usage or lab
error (then the JSON has ``"error"``). Usable as a Chaos Toolkit ``process`` provider with
a tolerance of ``0`` (the exit code) or ``{"type": "jsonpath", "path": "$.ok", "expect": true}``.

Checks made by default: amplification <= 2, attempts per call <= 4, recovery herd <= 3 (the
issue's hypothesis). The DNS storm and backoff shape are measured and reported; they are
judged only when a limit is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from chaos_dynamo.retry import probes
from chaos_dynamo.verdicts import VerdictParser, check, lab_configuration, print_verdict

DEFAULT_MAX_AMPLIFICATION = 2.0
DEFAULT_MAX_ATTEMPTS = 4.0
DEFAULT_MAX_HERD = 3.0


def parser() -> argparse.ArgumentParser:
    p = VerdictParser("retry", prog="probes/retry", description=__doc__.split("\n")[0])
    p.add_argument("service", help="the service's name (its record, or the app id in its User-Agent)")
    p.add_argument("--endpoint", default="", help="endpoint name (default: the lab's primary endpoint)")
    p.add_argument("--baseline-seconds", type=float, default=10.0)
    p.add_argument("--recovery-seconds", type=float, default=10.0)
    p.add_lab_options()
    p.add_argument("--statistic", default="max", choices=["max", "mean", "p50", "p95", "p99"],
                   help="attempts per call statistic (call log only; else an estimated mean)")
    p.add_argument("--bin-seconds", type=float, default=1.0, help="recovery herd bin width")
    p.add_argument("--min-baseline-qps", type=float, default=1.0, help="DNS storm baseline floor")
    p.add_argument("--max-amplification", type=float, default=DEFAULT_MAX_AMPLIFICATION)
    p.add_argument("--max-attempts-per-call", type=float, default=DEFAULT_MAX_ATTEMPTS)
    p.add_argument("--max-herd", type=float, default=DEFAULT_MAX_HERD)
    p.add_argument("--max-dns-storm", type=float, default=None, help="judge the DNS storm (off by default)")
    p.add_argument("--min-growth", type=float, default=None, help="judge backoff growth (needs a call log)")
    p.add_argument("--min-jitter", type=float, default=None, help="judge backoff jitter (needs a call log)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the recovery window to close")
    return p


def _check(name: str, measured: dict[str, Any], op: str, limit: float | None,
           value: Any = None) -> dict[str, Any] | None:
    if limit is None:
        return None
    number = measured.get("value") if value is None else value
    return check(name, number, op, limit, measured.get("skipped") or "")


def run(args: argparse.Namespace) -> dict[str, Any]:
    configuration = lab_configuration(args)
    observation = probes.observe(args.service, args.endpoint, args.baseline_seconds, args.recovery_seconds,
                                 configuration, wait=not args.no_wait)
    measured = probes.measure_all(observation, args.statistic, args.bin_seconds, args.min_baseline_qps,
                                  args.min_growth if args.min_growth is not None else 1.5,
                                  args.min_jitter if args.min_jitter is not None else 0.1)
    backoff = measured["backoff"].get("details") or {}
    checks = [
        _check("amplification", measured["amplification"], "<=", args.max_amplification),
        _check("attempts_per_call", measured["attempts_per_call"], "<=", args.max_attempts_per_call),
        _check("recovery_herd", measured["recovery_herd"], "<=", args.max_herd),
        _check("dns_query_storm", measured["dns_query_storm"], "<=", args.max_dns_storm),
        _check("backoff_growth", measured["backoff"], ">=", args.min_growth, backoff.get("growth")),
        _check("backoff_jitter", measured["backoff"], ">=", args.min_jitter, backoff.get("jitter")),
    ]
    judged = [c for c in checks if c is not None]
    return {
        "probe": "retry", "ok": all(c["ok"] for c in judged), "service": args.service,
        "endpoint": observation.endpoint.name, "windows": observation.windows.to_dict(),
        "checks": judged, "measurements": measured, "notes": list(observation.notes),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``probes/retry``; print one JSON verdict; 0 pass, 1 fail, 2 usage or lab error."""
    args = parser().parse_args(argv)
    return print_verdict("retry", lambda: run(args), {"service": args.service})
