"""Where a running lab is: the state file ``lab up`` writes and everything else reads.

The state file records exactly what one ``lab up`` started (its pid and addresses), so
``lab down`` stops that and nothing else, and activities in a ``chaos run`` find the lab
without any configuration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
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
class NamespaceInfo:
    """One namespace of a running lab: its zone, endpoint(s), plan table, table prefix and
    load balancers (dicts as in :attr:`LabInfo.load_balancers`)."""

    name: str
    zone: str
    zone_id: str
    endpoints: tuple[EndpointInfo, ...]
    table_prefix: str
    plan_table: str
    load_balancers: tuple[dict[str, Any], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NamespaceInfo:
        return cls(**{**data, "endpoints": tuple(EndpointInfo(**e) for e in data.get("endpoints", ())),
                      "load_balancers": tuple(data.get("load_balancers", ()))})


NAMESPACE_KEY = "chaos_dynamo_namespace"
"""The configuration key naming the namespace an experiment's activities act in."""
NAMESPACE_ENV = "CHAOS_DYNAMO_NAMESPACE"
"""Names the namespace activities act in, when the configuration has no ``chaos_dynamo_namespace``."""
TABLE_PREFIX_ENV = "CHAOS_DYNAMO_TABLE_PREFIX"
"""A namespace's table prefix, for the tables its services name by default."""
_NAMESPACE_VARS = (NAMESPACE_ENV, TABLE_PREFIX_ENV)


def configured_namespace(configuration: object, environ: Mapping[str, str] | None = None,
                         where: str = "") -> str:
    """The lab namespace activities act in (docs/namespaces.md), "" for the lab's own parts.

    The configuration's ``chaos_dynamo_namespace`` when it has the key (a name, an
    ``{"type": "env", "key": K, "default": D}`` entry as in an experiment file, or "" /
    null for the lab's own parts whatever the environment says), else
    ``$CHAOS_DYNAMO_NAMESPACE`` (of ``environ``, else of this process).

    The one lookup for activities (:mod:`chaos_dynamo.endpoint._lab`) and for verify
    (:mod:`chaos_dynamo.verify.experiments`); ``where`` prefixes the field an error names
    (``configuration.`` for an experiment file).

    Raises:
        ConfigError: the value is not a string, or not a namespace name.
    """
    from chaos_dynamo.config import check_namespace_name

    env = os.environ if environ is None else environ
    if not isinstance(configuration, Mapping) or NAMESPACE_KEY not in configuration:
        value: Any = env.get(NAMESPACE_ENV, "")
        field_name = f"${NAMESPACE_ENV}"
    else:
        value = configuration[NAMESPACE_KEY]
        field_name = f"{where}{NAMESPACE_KEY}"
        if isinstance(value, Mapping) and value.get("type") == "env" and isinstance(value.get("key"), str):
            value = env.get(value["key"], value.get("default", ""))
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(field_name, f"{value!r} is not a namespace name",
                          "give the namespace's name in quotes, an {\"type\": \"env\", \"key\": ...} entry, "
                          "or \"\" for the lab's own parts")
    name = value.strip()
    return check_namespace_name(field_name, name) if name else ""


@dataclass(frozen=True)
class LabInfo:
    """Addresses and identity of a running lab (JSON in the state file).

    The top-level zones, endpoints, plan table and load balancers are the lab's own; each of
    ``namespaces`` has its own (docs/namespaces.md). :meth:`scoped` gives the view of one
    namespace: the same lab with only that namespace's parts, ``namespace`` set.
    """

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
    namespaces: tuple[NamespaceInfo, ...] = ()
    namespace: str = ""  # set in the view of one namespace (scoped)
    table_prefix: str = ""  # the namespace's, in its view

    def scoped(self, name: str) -> LabInfo:
        """The view of namespace ``name``: its zone, endpoints, plan table and load
        balancers in place of the lab's own (``namespaces`` still lists them all).

        Raises:
            ConfigError: ``name`` is not a namespace of the lab (the error lists them).
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("chaos_dynamo_namespace", f"{name!r} is not a namespace name",
                              "give a namespace name in quotes, or leave chaos_dynamo_namespace out")
        for ns in self.namespaces:
            if ns.name == name:
                return replace(self, zones={ns.zone: ns.zone_id}, endpoints=ns.endpoints,
                               plan_table=ns.plan_table, load_balancers=ns.load_balancers,
                               namespace=ns.name, table_prefix=ns.table_prefix)
        names = [ns.name for ns in self.namespaces]
        fix = (f"use one of {names}" if names else
               "this lab has no namespaces: start one with `chaos-dynamo lab up --namespaces 2` (or "
               "[[namespaces]] in its topology file), or leave chaos_dynamo_namespace out")
        raise ConfigError("chaos_dynamo_namespace", f"{name!r} is not a namespace of the lab", fix)

    @property
    def scope_lbs(self) -> frozenset[str] | None:
        """The load balancers whose traffic this view counts: its own, in a lab with
        namespaces; None (every one) in a lab without."""
        if not (self.namespace or self.namespaces):
            return None
        return frozenset(str(lb["name"]) for lb in self.load_balancers)

    def in_scope(self, name: str) -> bool:
        """Whether a DNS name lies in this view's zones (always, in a lab without namespaces)."""
        if not (self.namespace or self.namespaces):
            return True
        wanted = name.lower().rstrip(".")
        return any(wanted == z.lower().rstrip(".") or wanted.endswith("." + z.lower().rstrip("."))
                   for z in self.zones)

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
        } | ({NAMESPACE_ENV: self.namespace, TABLE_PREFIX_ENV: self.table_prefix} if self.namespace else {})

    def process_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (say ``os.environ``) for a process that must reach this lab and nothing else.

        Every ``AWS_*`` variable of ``base`` is dropped (a service-specific endpoint such as
        ``AWS_ENDPOINT_URL_STS``, ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``, a profile or a
        session token would send a client to real AWS), the shared config and credentials
        files are hidden (their per-service ``endpoint_url`` and profiles likewise), the
        instance metadata service is off, then :meth:`env` is added. Other variables,
        including an experiment's ``CHAOS_DYNAMO_*`` settings, pass through, except the
        namespace ones: the process is in this view's namespace, or in none.
        """
        kept = {k: v for k, v in without_aws(base).items() if k not in _NAMESPACE_VARS}
        return kept | self.env()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabInfo:
        data = json.loads(text)
        data["endpoints"] = tuple(EndpointInfo(**e) for e in data.get("endpoints", ()))
        data["load_balancers"] = tuple(data.get("load_balancers", ()))
        data["namespaces"] = tuple(NamespaceInfo.from_dict(n) for n in data.get("namespaces", ()))
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
