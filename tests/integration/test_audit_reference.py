"""`chaos-dynamo audit` on the reference services: the README's snippet as written (a lab of its
own, the real CLI), with the us-east-1 failure (the endpoint's DNS answer emptied) in the
middle of each run.

The hardened service is audited first and its findings written as a baseline; the naive
service is then audited against it with --fail-on high: it must fail on its retries and
missing timeouts, the risks it adds, and only on those.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest

from chaos_dynamo.lab.state import LabInfo
from tests.conftest import BIN, ROOT, readme_snippet

pytestmark = pytest.mark.integration

NEW_IN_NAIVE = {"retry-unbounded:dynamodb:us-east-1", "retry-no-backoff:dynamodb:us-east-1",
                "timeouts-missing:dynamodb:us-east-1"}


def audit(args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`chaos-dynamo audit ARGS` from the repository's root, outside any lab's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    return subprocess.run([str(BIN / "chaos-dynamo"), "audit", *args], cwd=ROOT, env=env | (extra_env or {}),
                          capture_output=True, text=True, timeout=120)



@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README's audit snippet, as written: a lab of its own, hardened then naive."""
    out = tmp_path_factory.mktemp("audit-reference")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    env |= {"PATH": f"{BIN}:{env.get('PATH', '')}", "CHAOS_DYNAMO_STATE": str(out / "lab.json")}
    script = ("set -euo pipefail\ntrap 'chaos-dynamo lab down >/dev/null 2>&1 || true' EXIT\n"
              + readme_snippet("audit"))
    result = subprocess.run(["bash", "-c", script], cwd=out, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    assert "lab stopped" in result.stdout and not (out / "lab.json").exists()
    naive_exit = re.search(r"^audit exited (\d+): ", result.stdout, re.M)
    return {"dir": out, "output": result.stdout + result.stderr,
            "naive_exit": int(naive_exit.group(1)) if naive_exit else 0,
            "hardened_doc": json.loads((out / "hardened.json").read_text()),
            "naive_doc": json.loads((out / "naive.json").read_text())}


def dynamodb(doc: dict[str, Any]) -> dict[str, Any]:
    (dep,) = [d for d in doc["dependencies"] if d["key"] == "dynamodb@us-east-1"]
    return dep


def test_both_runs_lived_through_the_outage(runs: dict[str, Any], lab_info: LabInfo) -> None:
    """In order, whatever the machine's speed: calls that worked, the endpoint emptied, calls
    that failed to resolve it, the endpoint restored, calls that worked again."""
    assert runs["output"].count("audit: outage: ") == 4  # emptied and restored, in each run
    assert runs["output"].count("reference ") >= 2  # the services' own output passed through
    for kind in ("hardened", "naive"):
        run = runs[f"{kind}_doc"]["run"]
        assert run["stopped"] == "timeout" and run["exit_code"] == 0, runs["output"][-4000:]
        outage = run["outage"]
        assert outage["endpoint"] == lab_info.primary_endpoint.name and outage["restored"] and not outage["error"]
        assert outage["after"] <= outage["start"] < outage["end"]
        dep = dynamodb(runs[f"{kind}_doc"])
        assert {"PutItem", "GetItem", "DescribeTable"} <= set(dep["operations"])
        assert dep["host"] == lab_info.primary_endpoint.name and dep["dns_failures"] > 0
        phases = dep["around_outage"]
        assert phases["before"]["ok"] > 0, (kind, phases)
        assert phases["during"]["dns_failures"] > 0, (kind, phases)
        assert phases["after"]["ok"] > 0, (kind, phases)
        assert dep["processes"] == ["reference"] and dep["fallback"] == {"regions": [], "hosts": []}


def test_the_naive_service_is_flagged_for_its_retries_and_missing_timeouts(runs: dict[str, Any]) -> None:
    doc = runs["naive_doc"]
    found = {f["id"]: f for f in doc["findings"]}
    assert NEW_IN_NAIVE <= set(found)
    assert found["timeouts-missing:dynamodb:us-east-1"]["severity"] == "high"
    assert "botocore default" in found["timeouts-missing:dynamodb:us-east-1"]["evidence"]
    dep = dynamodb(doc)
    assert dep["attempts"]["max"] > 10 and dep["longest_call"]["client_calls"] > 10
    per_attempt = [s for s in dep["settings"] if s["clients"] > 10]  # a new client for every attempt
    assert per_attempt and per_attempt[0]["connect_timeout"] == 60 and not per_attempt[0]["connect_timeout_set"]
    source = (ROOT / "chaos_dynamo" / "services" / "reference.py").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(source) if 'client("dynamodb", config=self._config)' in text)
    (site,) = per_attempt[0]["sites"]
    assert site.endswith(f"chaos_dynamo/services/reference.py:{line}")  # _FreshClients.new


def test_the_hardened_service_is_not_flagged_for_retries_or_timeouts(runs: dict[str, Any]) -> None:
    doc = runs["hardened_doc"]
    assert [f["id"] for f in doc["findings"]] == ["region-us-east-1-only:dynamodb:us-east-1"]
    dep = dynamodb(doc)
    assert 2 <= dep["attempts"]["max"] <= 4  # it did retry through the outage, boundedly
    assert {(s["connect_timeout"], s["read_timeout"], s["connect_timeout_set"]) for s in dep["settings"]} == {
        (2.0, 5.0, True)}
    assert (runs["dir"] / "baseline.json").exists()  # and it exited 0 (no --fail-on): the snippet went on


def test_fail_on_high_fails_the_naive_service_on_its_new_risks_only(runs: dict[str, Any]) -> None:
    doc = runs["naive_doc"]
    assert runs["naive_exit"] == 1, runs["output"][-4000:]
    assert set(doc["gate"]["gating"]) == NEW_IN_NAIVE and doc["gate"]["failed"]
    known = {f["id"]: f["new"] for f in doc["findings"]}
    assert known["region-us-east-1-only:dynamodb:us-east-1"] is False
    assert all(known[i] for i in NEW_IN_NAIVE)
    saved = str(runs["dir"] / "naive.json")
    regated = audit(["--from", saved, "--fail-on", "high", "--json", "-"])
    assert regated.returncode == 1
    assert "region-us-east-1-only:dynamodb:us-east-1" in json.loads(regated.stdout)["gate"]["gating"]
    assert audit(["--from", saved, "--fail-on", "high", "--baseline", saved]).returncode == 0


def test_markdown_and_mermaid_outputs(runs: dict[str, Any]) -> None:
    markdown = (runs["dir"] / "naive.md").read_text()
    assert markdown.startswith("# Dependency audit: reference")
    assert "| dynamodb@us-east-1 | dynamodb.us-east-1.amazonaws.com | call log |" in markdown
    assert "### High (4)" in markdown and "`retry-no-backoff:dynamodb:us-east-1`" in markdown
    mermaid = (runs["dir"] / "naive.mmd").read_text()
    assert mermaid.startswith("graph LR\n") and "class d0 high" in mermaid and "retry-unbounded" in mermaid
