"""Resolve lab names through the lab DNS from inside any Python process.

botocore (through urllib3) looks names up with ``socket.getaddrinfo``. This shim replaces
that function: names inside the lab's zones are asked of the lab DNS over real UDP, and
every other name goes to the system resolver untouched. Without ``CHAOS_DYNAMO_ZONES``
every name is asked of the lab DNS first, and one it refuses, or any name while it does
not answer, goes to the system resolver. Nothing is cached, as with glibc without nscd,
so a service that looks names up on every retry shows it in the DNS log.

It switches on at interpreter start when ``CHAOS_DYNAMO_DNS=host:port`` is set (through the
``chaos_dynamo_shim.pth`` file the package installs), or explicitly::

    with lab_resolver(("127.0.0.1", 5353), zones=["us-east-1.amazonaws.com"]):
        boto3.client("dynamodb", endpoint_url="http://dynamodb.us-east-1.amazonaws.com:8000")

The environment it reads at start (``CHAOS_DYNAMO_SHIM=0`` switches all of it off):

- ``CHAOS_DYNAMO_DNS=host:port`` and ``CHAOS_DYNAMO_ZONES=a,b``: resolve lab names as above.
- ``CHAOS_DYNAMO_SOURCE_ADDRESS=127.0.0.x``: send this process's DNS queries from that
  address, so the lab's DNS log attributes them to the service (loopback IPv4 only).
- ``CHAOS_DYNAMO_CALL_LOG=<dir>``: hook botocore (:mod:`chaos_dynamo.callhooks`) and write
  every logical call and each of its attempts to ``<dir>/<service>-<pid>.jsonl``
  (:mod:`chaos_dynamo.calllog`; the service is ``CHAOS_DYNAMO_SERVICE``, else
  ``AWS_SDK_UA_APP_ID``). This works without ``CHAOS_DYNAMO_DNS`` too: attempts per call
  are worth knowing against any endpoint (LocalStack, MiniStack, a sandbox account).

A bad value is reported in one line on stderr and that part stays off; the process starts.
Kept to the standard library and cheap: it is imported by every Python process that has
one of the variables; botocore is hooked only when the process itself imports it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from chaos_dynamo.dns.client import DnsTimeout, check_source, query
from chaos_dynamo.dns.wire import WireError

DNS_ENV = "CHAOS_DYNAMO_DNS"
ZONES_ENV = "CHAOS_DYNAMO_ZONES"
DISABLE_ENV = "CHAOS_DYNAMO_SHIM"
SOURCE_ENV = "CHAOS_DYNAMO_SOURCE_ADDRESS"
CALL_LOG_ENV = "CHAOS_DYNAMO_CALL_LOG"
"""Same value as :data:`chaos_dynamo.calllog.CALL_LOG_ENV`, kept here so start-up needs no import."""

_original_getaddrinfo: Callable[..., list[Any]] = socket.getaddrinfo
_lock = threading.Lock()
_active: _Resolver | None = None
_booted: bool | None = None
"""What :func:`install_from_env` returned for ``os.environ``; None before it ran."""

# glibc's codes, so callers (botocore among them) see what a real outage shows them.
EAI_NONAME = getattr(socket, "EAI_NONAME", -2)
EAI_AGAIN = getattr(socket, "EAI_AGAIN", -3)
EAI_NODATA = getattr(socket, "EAI_NODATA", -5)

_QTYPES: dict[int, tuple[str, ...]] = {socket.AF_INET: ("A",), socket.AF_INET6: ("AAAA",)}


def parse_server(text: str) -> tuple[str, int]:
    """``127.0.0.1:5353`` -> ("127.0.0.1", 5353); ValueError naming the variable otherwise."""
    host, sep, port = text.strip().rpartition(":")
    try:
        if not sep or not host:
            raise ValueError
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise ValueError(f"{DNS_ENV}={text!r} is not host:port (e.g. 127.0.0.1:5353); "
                         "take it from `chaos-dynamo lab env`") from None
    return check_server((host, number))


def check_server(server: tuple[str, int]) -> tuple[str, int]:
    """Return ``server`` if its host is a loopback address; ValueError naming the variable.

    The lab DNS only ever listens on loopback, so any other address is a mistake, and
    sending every lookup of the process there would leak names off the machine.
    """
    host, port = server
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{DNS_ENV}={host}:{port} is not a loopback address; the lab DNS listens "
                         "on 127.0.0.x only: take the value from `chaos-dynamo lab env`")
    return server


class _Answer:
    """What the lab DNS said about one name, reduced to what getaddrinfo needs."""

    __slots__ = ("addresses", "refused", "unreachable")

    def __init__(self, addresses: list[str], refused: bool = False, unreachable: bool = False) -> None:
        self.addresses = addresses
        self.refused = refused
        self.unreachable = unreachable


class _Resolver:
    """The replacement getaddrinfo, with counters of what it resolved."""

    def __init__(self, server: tuple[str, int], zones: Sequence[str] | None, timeout: float,
                 source: str | None = None) -> None:
        self.server = server
        self.zones = tuple(z.lower().strip(".") for z in zones) if zones else None
        self.timeout = timeout
        self.source = source
        self.counts = {"lab_lookups": 0, "lab_failures": 0, "passed_through": 0}

    def _is_lab_name(self, host: str) -> bool | None:
        """True/False when the zones are known; None when the lab DNS must be asked."""
        if self.zones is None:
            return None
        name = host.lower().rstrip(".")
        return any(name == z or name.endswith("." + z) for z in self.zones)

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,  # noqa: A002
                    proto: int = 0, flags: int = 0) -> list[Any]:
        if not isinstance(host, str) or not host or _is_literal(host) or host == "localhost":
            return _original_getaddrinfo(host, port, family, type, proto, flags)
        lab = self._is_lab_name(host)
        if lab is False:
            self.counts["passed_through"] += 1
            return _original_getaddrinfo(host, port, family, type, proto, flags)
        answer = self._lookup(host, family, lab_name=lab is True)
        if lab is None and (answer.refused or answer.unreachable):
            # Zones unknown: a name the lab does not serve, or a lab DNS that is not there,
            # goes to the system resolver, as if the shim were not installed.
            self.counts["passed_through"] += 1
            return _original_getaddrinfo(host, port, family, type, proto, flags)
        if answer.refused:
            # A name inside the lab's zones that the lab DNS does not serve: as glibc
            # reports an NXDOMAIN, never an empty list (callers index [0]).
            self.counts["lab_failures"] += 1
            raise socket.gaierror(EAI_NONAME, "Name or service not known")
        self.counts["lab_lookups"] += 1
        results: list[Any] = []
        for address in answer.addresses:
            results.extend(_original_getaddrinfo(address, port, family, type, proto,
                                                 flags | socket.AI_NUMERICHOST))
        return results

    def _lookup(self, host: str, family: int, lab_name: bool) -> _Answer:
        """Ask the lab DNS; raise gaierror for answers a resolver would report as errors.

        With ``lab_name`` False (zones unknown) a silent server or a name that cannot be
        asked is returned as ``unreachable`` for the caller to pass through.
        """
        addresses: list[str] = []
        rcodes: list[str] = []
        for qtype in _QTYPES.get(family, ("A", "AAAA")):
            try:
                answer = query(self.server, host, qtype, timeout=self.timeout, source=self.source)
            except WireError:  # not a name DNS can carry (e.g. non-ASCII)
                if not lab_name:
                    return _Answer([], unreachable=True)
                self.counts["lab_failures"] += 1
                raise socket.gaierror(EAI_NONAME, "Name or service not known") from None
            except (DnsTimeout, OSError):
                self.counts["lab_failures"] += 1
                if not lab_name:
                    return _Answer([], unreachable=True)
                raise socket.gaierror(EAI_AGAIN, "Temporary failure in name resolution") from None
            rcodes.append(answer.rcode)
            addresses.extend(answer.addresses)
        if all(r == "REFUSED" for r in rcodes):
            return _Answer([], refused=True)
        if addresses:
            return _Answer(addresses)
        self.counts["lab_failures"] += 1
        if all(r == "NXDOMAIN" for r in rcodes):
            raise socket.gaierror(EAI_NONAME, "Name or service not known")
        if any(r not in ("NOERROR", "NXDOMAIN") for r in rcodes):
            raise socket.gaierror(EAI_AGAIN, "Temporary failure in name resolution")
        raise socket.gaierror(EAI_NODATA, "No address associated with hostname")


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def parse_source(text: str) -> str:
    """Return ``text`` if it is an IPv4 loopback address; ValueError naming the variable otherwise."""
    try:
        return check_source(text.strip())
    except ValueError:
        raise ValueError(f"{SOURCE_ENV}={text!r} is not an IPv4 loopback address (127.0.0.x); DNS "
                         "queries are only ever sent from loopback: use e.g. 127.0.0.101") from None


def install(server: tuple[str, int], zones: Sequence[str] | None = None, timeout: float = 1.0,
            source: str | None = None) -> None:
    """Route lookups of lab names (or, with no zones given, any name the lab DNS serves).

    Args:
        source: send the queries from this loopback address (127.0.0.x) instead of the
            kernel's choice, so the lab DNS log tells this process's queries apart.

    Raises:
        ValueError: ``server`` or ``source`` is not a loopback address (the message names
            $CHAOS_DYNAMO_DNS or $CHAOS_DYNAMO_SOURCE_ADDRESS); nothing changes.
    """
    global _active
    check_server(server)
    if source is not None:
        source = parse_source(source)
    with _lock:
        _active = _Resolver(server, zones, timeout, source)
        socket.getaddrinfo = _active.getaddrinfo


def uninstall() -> None:
    """Put the system resolver back."""
    global _active
    with _lock:
        _active = None
        socket.getaddrinfo = _original_getaddrinfo


def active() -> bool:
    return _active is not None


def stats() -> dict[str, int]:
    """What the shim resolved so far in this process."""
    return dict(_active.counts) if _active else {}


def source_address() -> str | None:
    """The address the shim's DNS queries are sent from, when one was chosen."""
    resolver = _active
    return resolver.source if resolver else None


@contextmanager
def lab_resolver(server: tuple[str, int], zones: Sequence[str] | None = None,
                 timeout: float = 1.0, source: str | None = None) -> Iterator[None]:
    """Resolve lab names through ``server`` inside the block (queries from ``source`` if given)."""
    previous = _active
    install(server, zones, timeout, source)
    try:
        yield
    finally:
        if previous is None:
            uninstall()
        else:
            install(previous.server, previous.zones, previous.timeout, previous.source)


def install_call_log(directory: str, service: str | None = None) -> None:
    """Log every botocore call and attempt of this process under ``directory``.

    Args:
        directory: where ``<service>-<pid>.jsonl`` is written (created at the first call).
        service: the name calls are logged under; ``calllog.service_name()`` by default
            (read at the first call, so a process that never calls AWS imports nothing more).

    Raises:
        ValueError: ``directory`` is empty or names something that is not a directory
            (the message names $CHAOS_DYNAMO_CALL_LOG); nothing changes.
    """
    from chaos_dynamo import callhooks

    if not directory.strip():
        raise ValueError(f"{CALL_LOG_ENV} is empty; set it to a directory for the call logs")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{CALL_LOG_ENV}={directory!r} is not a directory; set it to a directory "
                         "for the call logs (it is created if missing)")
    callhooks.install(callhooks.ProcessLog(directory, service), service=service)


def install_from_env(environ: Any = None) -> bool:
    """Install what the environment asks for (see the module docstring).

    Returns:
        True when lab names now resolve through the lab DNS (the call log, which can be on
        without it, is reported by :func:`chaos_dynamo.callhooks.installed`).

    A bad value is reported on stderr and leaves that part off (the system resolver, the
    default source address, botocore unhooked): a typo in the environment must not stop
    every Python program from starting.

    From ``os.environ`` (``environ`` None) it runs once per process: in a virtualenv,
    CPython 3.11's ``site`` executes every ``.pth`` line twice (``venv()`` and then
    ``main()`` both process the venv's site-packages).
    """
    global _booted
    if environ is None:
        if _booted is not None:
            return _booted
        _booted = False
    env = os.environ if environ is None else environ
    if env.get(DISABLE_ENV, "1") == "0":
        return False
    resolving = False
    text = env.get(DNS_ENV, "")
    if text:
        zones = [z for z in env.get(ZONES_ENV, "").split(",") if z.strip()] or None
        source: str | None = env.get(SOURCE_ENV, "").strip() or None
        if source is not None:
            try:
                source = parse_source(source)
            except ValueError as exc:
                sys.stderr.write(f"chaos-dynamo shim: {exc}; queries go from the default address\n")
                source = None
        try:
            install(parse_server(text), zones, source=source)
            resolving = True
        except ValueError as exc:
            sys.stderr.write(f"chaos-dynamo shim not active: {exc}\n")
    directory = env.get(CALL_LOG_ENV, "")
    if directory:
        try:
            service = None
            if environ is not None:
                from chaos_dynamo.calllog import service_name

                service = service_name(env)
            install_call_log(directory, service)
        except (ValueError, OSError) as exc:
            sys.stderr.write(f"chaos-dynamo call log not active: {exc}\n")
    if environ is None:
        _booted = resolving
    return resolving
