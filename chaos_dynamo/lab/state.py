"""Where a running lab is: the state file ``lab up`` writes and everything else reads.

The state file records exactly what one ``lab up`` started (its pid and addresses), so
``lab down`` stops that and nothing else, and activities in a ``chaos run`` find the lab
without any configuration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.errors import ConfigError, LabError

DEFAULT_STATE_FILE = Path(".chaos-dynamo") / "lab.json"
STATE_ENV = "CHAOS_DYNAMO_STATE"


@dataclass(frozen=True)
class EndpointInfo:
    name: str
    zone: str
    zone_id: str
    ipv6: bool


@dataclass(frozen=True)
class LabInfo:
    """Addresses and identity of a running lab (JSON in the state file)."""

    pid: int
    api_url: str
    dns_host: str
    dns_port: int
    lb_port: int
    region: str
    emulator_url: str
    embedded: bool
    seed: int
    plan_table: str
    record_ttl: int
    propagation_delay: float
    started_at: float
    zones: dict[str, str] = field(default_factory=dict)  # name -> zone id
    endpoints: tuple[EndpointInfo, ...] = ()
    load_balancers: tuple[dict[str, Any], ...] = ()
    # Route 53 health-check time runs this much faster than AWS's (older state files lack it).
    health_check_speedup: float = 10.0

    @property
    def dns(self) -> tuple[str, int]:
        return (self.dns_host, self.dns_port)

    @property
    def primary_endpoint(self) -> EndpointInfo:
        return self.endpoints[0]

    def endpoint(self, name: str | None) -> EndpointInfo:
        """The named endpoint (case-insensitive, trailing dot optional) or the primary one.

        Raises:
            ConfigError: ``name`` (an activity's ``endpoint`` argument) is not a string or
                not an endpoint of the lab.
        """
        if name is None or name == "":
            return self.primary_endpoint
        names = [e.name for e in self.endpoints]
        if not isinstance(name, str):
            raise ConfigError("endpoint", f"{name!r} is not an endpoint name",
                              f"give a name in quotes, one of {names}, or \"\" for the primary endpoint")
        wanted = name.lower().rstrip(".")
        for ep in self.endpoints:
            if ep.name == wanted:
                return ep
        raise ConfigError("endpoint", f"{name!r} is not an endpoint of the lab", f"use one of {names}")

    def dynamodb_url(self, endpoint: str | None = None) -> str:
        """The DynamoDB URL a service uses: the endpoint's DNS name on the LB port."""
        return f"http://{self.endpoint(endpoint).name}:{self.lb_port}"

    def env(self) -> dict[str, str]:
        """Environment a shell or CI step needs to reach this lab."""
        return {
            "AWS_ENDPOINT_URL": self.api_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url(),
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CHAOS_DYNAMO_API": self.api_url,
            "CHAOS_DYNAMO_DNS": f"{self.dns_host}:{self.dns_port}",
            "CHAOS_DYNAMO_ZONES": ",".join(sorted(self.zones)),
            # The primary endpoint's hosted zone, for activities that take a zone id
            # (chaostoolkit-aws's chaosaws.route53.probes.get_hosted_zone).
            "CHAOS_DYNAMO_ZONE_ID": self.primary_endpoint.zone_id if self.endpoints else "",
        }

    def process_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (say ``os.environ``) for a process that must reach this lab and nothing else.

        Every ``AWS_*`` variable of ``base`` is dropped (a service-specific endpoint such as
        ``AWS_ENDPOINT_URL_STS``, ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``, a profile or a
        session token would send a client to real AWS), the shared config and credentials
        files are hidden (their per-service ``endpoint_url`` and profiles likewise), the
        instance metadata service is off, then :meth:`env` is added. Other variables,
        including an experiment's ``CHAOS_DYNAMO_*`` settings, pass through.
        """
        return without_aws(base) | self.env()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabInfo:
        data = json.loads(text)
        data["endpoints"] = tuple(EndpointInfo(**e) for e in data.get("endpoints", ()))
        data["load_balancers"] = tuple(data.get("load_balancers", ()))
        return cls(**data)


def without_aws(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without any ``AWS_*`` setting, with the shared config and credentials files
    hidden and instance metadata off: no client made from it can find real AWS by itself."""
    kept = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    return kept | {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                   "AWS_EC2_METADATA_DISABLED": "true"}


def state_path(path: str | Path | None = None) -> Path:
    """The state file: the argument, else $CHAOS_DYNAMO_STATE, else ./.chaos-dynamo/lab.json."""
    if path:
        return Path(path).absolute()
    env = os.environ.get(STATE_ENV)
    return Path(env).absolute() if env else DEFAULT_STATE_FILE.absolute()


def write_state(info: LabInfo, path: Path) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(info.to_json(), encoding="utf-8")
    os.replace(tmp, path)


def read_state(path: str | Path | None = None) -> LabInfo:
    """The running lab's info; LabError with the fix when there is none."""
    p = state_path(path)
    try:
        return LabInfo.from_json(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(
            f"no lab is running (no state file at {p}); start one with "
            "`chaos-dynamo lab up --detach`, or pass --state-file / set CHAOS_DYNAMO_STATE"
        ) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise LabError(f"the state file {p} is unreadable ({exc}); run `chaos-dynamo lab down` "
                       "to clear it") from None


def remove_state(path: Path, pid: int | None = None) -> None:
    """Remove the state file if it still belongs to ``pid`` (or unconditionally)."""
    try:
        if pid is not None and LabInfo.from_json(path.read_text(encoding="utf-8")).pid != pid:
            return
        path.unlink()
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        pass
