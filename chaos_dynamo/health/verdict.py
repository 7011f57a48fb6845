"""``probes/health``: a service's own health, as one JSON verdict.

    probes/health (--url URL | --service NAME [--state FILE]) [--timeout 2]
        healthy now: every health URL answers 200
    probes/health ... --metric NAME [--label k=v ...] [--aggregate sum] [--at-most X] [--at-least Y]
        a Prometheus metric (metrics URL with --url; each instance's with --service)
    probes/health ... --seconds-to-healthy [--endpoint NAME] [--wait 60] [--at-most X]
        seconds from the endpoint's last restore to the first healthy answer

Prints ``{"probe": "health", "ok", "check", "value", ...}``; exits 0 when ok, 1 when not,
2 for a usage or lab error (the JSON then has ``"error"``). Usable as a Chaos Toolkit
``process`` provider with tolerance ``0``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from chaos_dynamo.health import probes
from chaos_dynamo.verdicts import print_verdict


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        print(json.dumps({"probe": "health", "ok": False, "error": f"usage: {message}"}))
        self.print_usage(sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="probes/health", description=__doc__.split("\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="health URL (metrics URL with --metric); loopback only")
    target.add_argument("--service", help="a recorded service: every instance's URLs")
    p.add_argument("--state", help="the lab's state file (default: $CHAOS_DYNAMO_STATE)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per HTTP request")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--metric", help="judge this Prometheus metric")
    mode.add_argument("--seconds-to-healthy", action="store_true",
                      help="seconds from the endpoint's last restore to healthy")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="metric label filter")
    p.add_argument("--aggregate", default="sum", choices=list(probes.AGGREGATES))
    p.add_argument("--endpoint", default="", help="endpoint whose restore counts (--seconds-to-healthy)")
    p.add_argument("--wait", type=float, default=60.0, help="give up after this many seconds")
    p.add_argument("--at-most", type=float, default=None)
    p.add_argument("--at-least", type=float, default=None)
    return p


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser().error(f"--label {pair!r} is not K=V")
        labels[key] = value
    return labels


def _judge(value: float, at_most: float | None, at_least: float | None) -> bool:
    return (at_most is None or value <= at_most) and (at_least is None or value >= at_least)


def run(args: argparse.Namespace) -> dict[str, Any]:
    configuration: dict[str, Any] = {"chaos_dynamo_state": args.state} if args.state else {}
    target = {"url": args.url or "", "service": args.service or ""}
    base = {"probe": "health", **{k: v for k, v in target.items() if v}}
    if args.metric:
        value = probes.prometheus_metric(args.metric, target["url"], target["service"], _labels(args.label),
                                         args.aggregate, args.timeout, configuration=configuration)
        return {**base, "check": "metric", "metric": args.metric, "labels": _labels(args.label),
                "aggregate": args.aggregate, "value": value, "at_most": args.at_most,
                "at_least": args.at_least, "ok": _judge(value, args.at_most, args.at_least)}
    if args.seconds_to_healthy:
        seconds, healthy = probes.measure_time_to_healthy(target["url"], target["service"], args.endpoint,
                                                          args.wait, configuration)
        ok = healthy and _judge(seconds, args.at_most, args.at_least)
        return {**base, "check": "seconds_to_healthy", "value": seconds, "healthy": healthy,
                "at_most": args.at_most, "ok": ok}
    urls = [args.url] if args.url else probes.service_urls(args.service, "health_url", configuration)
    statuses = {u: probes.http_status(u, timeout=args.timeout) for u in urls}
    healthy = all(s == 200 for s in statuses.values())
    return {**base, "check": "health", "value": healthy, "statuses": statuses, "ok": healthy}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``probes/health``; print one JSON verdict; 0 ok, 1 not ok, 2 usage or lab error."""
    args = parser().parse_args(argv)
    return print_verdict("health", lambda: run(args))
