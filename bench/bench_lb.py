"""DynamoDB GetItem through the endpoint name and an LB, against the emulator directly.

Target: the LB path adds at most 15% to the median GetItem latency.

One detached lab (``chaos-dynamo lab up --detach``, its own process); three boto3 clients
in this process, called in alternating blocks so machine noise falls on all alike:

direct
    ``endpoint_url`` = the lab's ``emulator_url`` (moto; it closes the connection after
    every response, so each call opens a new TCP connection).
named
    ``endpoint_url`` = ``http://dynamodb.us-east-1.amazonaws.com:LBPORT``, the name
    resolved through the lab DNS by ``chaos_dynamo.shim.lab_resolver``: what a service
    under test does. A lookup happens per new connection only, and the LB keeps client
    connections alive, so most calls reuse one (the table shows how many lookups and
    connections there were).
lb-ip
    ``endpoint_url`` = ``http://127.0.0.11:LBPORT``: the first LB by address, no DNS.
    ``named / lb-ip`` is the cost of DNS; ``lb-ip / direct`` the cost of the proxy.

The verdict is on ``named / direct`` (the path a service takes). The shim's lookup time
itself is measured apart (``getaddrinfo`` of the name, a lab DNS round trip).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from bench import _common as common
except ImportError:  # run as a script: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import _common as common

from chaos_dynamo import shim
from chaos_dynamo.lab.state import LabInfo

NAME = "lb"
TARGET_RATIO = 1.15
TABLE = "chaos-dynamo-bench"
KEY = {"pk": {"S": "bench-key"}}
PATHS = ("direct", "named", "lb-ip")
BLOCKS, CALLS_PER_BLOCK, WARMUP = 8, 50, 20
QUICK_BLOCKS, QUICK_CALLS_PER_BLOCK = 4, 25
LOOKUP_SAMPLES = 200


def _client(info: LabInfo, url: str, app_id: str) -> Any:
    """A DynamoDB client for ``url``, tagged ``app/<app_id>`` so the LB log tells paths apart.

    One attempt per call: a failure must show as an error, not hide as retry latency.
    """
    import boto3
    from botocore.config import Config

    # botocore-stubs 1.43 lacks user_agent_appid; botocore itself has had it since 1.29.
    config = Config(user_agent_appid=app_id,  # type: ignore[call-arg]
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=5, read_timeout=10)
    return boto3.session.Session().client(
        "dynamodb", endpoint_url=url, region_name=info.region, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=config)


def _urls(info: LabInfo) -> dict[str, str]:
    """The endpoint URL of each path; every one is a lab address."""
    lb_ip = info.load_balancers[0]["address"]
    urls = {"direct": info.emulator_url, "named": info.dynamodb_url(),
            "lb-ip": f"http://{lb_ip}:{info.lb_port}"}
    for url in urls.values():
        if not url.startswith(("http://127.", f"http://{info.primary_endpoint.name}:")):
            raise RuntimeError(f"{url} is not a lab address: refusing to send load there")
    return urls


def _prepare(direct: Any) -> None:
    """The table and the one item every call reads (created straight on the emulator)."""
    direct.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    direct.put_item(TableName=TABLE, Item=KEY | {"payload": {"S": "x" * 200}, "n": {"N": "42"}})


def _timed_calls(call: Callable[[], Any], count: int) -> list[float]:
    """Latency of ``count`` calls, in milliseconds."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000.0)
        if "Item" not in response:
            raise RuntimeError(f"GetItem returned no item: {response}")
    return samples


def _interleaved(clients: dict[str, Any], blocks: int, per_block: int) -> dict[str, list[float]]:
    """``blocks`` rounds; in each, ``per_block`` calls per path, the order rotating."""
    calls = {p: (lambda c=clients[p]: c.get_item(TableName=TABLE, Key=KEY)) for p in PATHS}
    for path in PATHS:
        _timed_calls(calls[path], WARMUP)
    samples: dict[str, list[float]] = {p: [] for p in PATHS}
    for block in range(blocks):
        if block % 2 == 0:
            common.progress(f"lb: block {block + 1}/{blocks} ({per_block} GetItem per path)")
        order = PATHS[block % len(PATHS):] + PATHS[:block % len(PATHS)]
        for path in order:
            samples[path].extend(_timed_calls(calls[path], per_block))
    return samples


def _lookup_ms(info: LabInfo) -> float:
    """Median time of one ``getaddrinfo`` of the endpoint name through the shim."""
    name = info.primary_endpoint.name
    times = []
    for _ in range(LOOKUP_SAMPLES):
        started = time.perf_counter()
        socket.getaddrinfo(name, info.lb_port, socket.AF_INET, socket.SOCK_STREAM)
        times.append((time.perf_counter() - started) * 1000.0)
    return common.median(times)


def _connections(info: LabInfo, since: float) -> dict[str, dict[str, int]]:
    """Requests and distinct client connections per path, from the LB request log."""
    from chaos_dynamo.endpoint._lab import http_json

    log = http_json(f"{info.api_url}/_chaos_dynamo/lb/log?since={since}")
    seen: dict[str, dict[str, Any]] = {}
    for record in log:
        for path in ("named", "lb-ip"):
            if f"app/bench-{path}" in record["user_agent"]:
                entry = seen.setdefault(path, {"requests": 0, "ports": set()})
                entry["requests"] += 1
                entry["ports"].add((record["lb"], record["client_port"]))
    return {p: {"requests": e["requests"], "connections": len(e["ports"])} for p, e in seen.items()}


def _measure(info: LabInfo, blocks: int, per_block: int) -> dict[str, Any]:
    urls = _urls(info)
    clients = {path: _client(info, url, f"bench-{path}") for path, url in urls.items()}
    since = time.time()
    with shim.lab_resolver(info.dns, zones=list(info.zones)):
        _prepare(clients["direct"])
        lookups_before = shim.stats()["lab_lookups"]
        samples = _interleaved(clients, blocks, per_block)
        lookups = shim.stats()["lab_lookups"] - lookups_before
        common.progress("lb: timing the shim's getaddrinfo")
        lookup_ms = _lookup_ms(info)
    return {"urls": urls, "samples": samples, "per_block": per_block, "named_lookups": lookups,
            "lookup_ms": lookup_ms, "lb_log": _connections(info, since)}


def _summaries(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {p: {"median_ms": common.median(s), "p90_ms": common.percentile(s, 90),
                "p99_ms": common.percentile(s, 99), "calls": len(s)} for p, s in samples.items()}


def block_ratio(samples: dict[str, list[float]], per_block: int, path: str) -> float:
    """Median over blocks of (median of ``path`` / median of direct) in the same block.

    Paired by block, so a slow spell of the machine cancels out of each ratio.
    """
    ratios = []
    for start in range(0, len(samples["direct"]), per_block):
        direct = common.median(samples["direct"][start:start + per_block])
        ratios.append(common.ratio(common.median(samples[path][start:start + per_block]), direct))
    return common.median(ratios)


def _add_metrics(result: common.BenchResult, raw: dict[str, Any], stats: dict[str, Any]) -> None:
    med = {p: stats[p]["median_ms"] for p in PATHS}
    for path in PATHS:
        result.add(common.info(f"GetItem median, {path}", med[path], "ms",
                               f"p90 {stats[path]['p90_ms']:.2f} ms, {stats[path]['calls']} calls"))
    named = common.ratio(med["named"], med["direct"])
    paired = block_ratio(raw["samples"], raw["per_block"], "named")
    result.add(common.at_most("ratio named / direct", named, TARGET_RATIO, "x",
                              f"{(named - 1) * 100:+.0f}% on the median; "
                              f"per-block paired ratio {paired:.2f}"))
    result.add(common.info("ratio lb-ip / direct", common.ratio(med["lb-ip"], med["direct"]), "x",
                           "proxy cost alone"))
    result.add(common.info("ratio named / lb-ip", common.ratio(med["named"], med["lb-ip"]), "x",
                           "DNS cost alone"))
    log = raw["lb_log"].get("named", {"requests": 0, "connections": 0})
    result.add(common.info("named: DNS lookups", raw["named_lookups"], "",
                           f"{log['connections']} connection(s) for {log['requests']} requests"))
    result.add(common.info("shim getaddrinfo (one lookup)", raw["lookup_ms"], "ms",
                           "paid per new connection"))


def run(quick: bool = False) -> common.BenchResult:
    """Measure GetItem on the three paths; ``quick`` runs fewer, shorter blocks."""
    blocks, per_block = (QUICK_BLOCKS, QUICK_CALLS_PER_BLOCK) if quick else (BLOCKS, CALLS_PER_BLOCK)
    with common.detached_lab() as info:
        raw = _measure(info, blocks, per_block)
    stats = _summaries(raw["samples"])
    result = common.BenchResult(NAME)
    _add_metrics(result, raw, stats)
    result.details = {k: v for k, v in raw.items() if k != "samples"} | {
        "paths": stats, "blocks": blocks, "warmup": WARMUP,
        "paired_ratio": {p: block_ratio(raw["samples"], per_block, p) for p in PATHS[1:]}}
    return result


if __name__ == "__main__":
    common.main_for(run)
