"""The lab's LB fleet: every :class:`~chaos_dynamo.lbfleet.proxy.LoadBalancer`, on one port."""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import LabError
from chaos_dynamo.lbfleet._capacity import BackendCapacity
from chaos_dynamo.lbfleet._lifecycle import _StartStopContext
from chaos_dynamo.lbfleet._state import RequestRecord, _sum_counts
from chaos_dynamo.lbfleet._validate import _check_specs, _port_number

if TYPE_CHECKING:
    from chaos_dynamo.lbfleet.proxy import LoadBalancer

__all__ = ["LBFleet"]

_PORT_ATTEMPTS = 20  # LBFleet: how many shared ports to try before giving up.


class LBFleet(_StartStopContext):
    """The lab's load balancers: one per (name, address), all on one shared port.

    One port for all because DNS answers carry addresses only: a client combines any
    answered address with the endpoint's port, so every LB must listen on that port.

    Args:
        specs: (name, address) per LB; names unique (not ``"total"``), addresses unique
            127.x.x.x.
        upstream: the emulator URL every LB forwards to.
        port: the shared port; 0 picks one free on every address at ``start``.
        max_connection_age, clock, upstream_timeout: passed to each :class:`LoadBalancer`.
        capacity: DynamoDB's capacity, one for the whole fleet (every LB's forwarded
            requests queue for the same slots); None: a new, unlimited one.
    """

    def __init__(
        self,
        specs: Sequence[tuple[str, str]],
        upstream: str,
        port: int = 0,
        *,
        max_connection_age: float = 60.0,
        clock: Clock = REAL_CLOCK,
        upstream_timeout: float = 30.0,
        capacity: BackendCapacity | None = None,
    ) -> None:
        # Imported here: proxy.py re-exports LBFleet, so a top-level import would be a cycle.
        from chaos_dynamo.lbfleet.proxy import LoadBalancer

        _check_specs(specs)
        self._port = _port_number("port", port)
        self._capacity = BackendCapacity() if capacity is None else capacity
        self._lbs = {
            name: LoadBalancer(
                name,
                address,
                port,
                upstream,
                max_connection_age=max_connection_age,
                clock=clock,
                upstream_timeout=upstream_timeout,
                capacity=self._capacity,
            )
            for name, address in specs
        }

    @property
    def capacity(self) -> BackendCapacity:
        """DynamoDB's capacity, shared by every LB of the fleet."""
        return self._capacity

    @property
    def port(self) -> int:
        """The shared port (the requested one until ``start``)."""
        return next(iter(self._lbs.values())).port

    def start(self) -> None:
        """Start every LB on one port; with port 0, try fresh ports a bounded number of times.

        Raises:
            LabError: no common free port was found, or the given port is taken.
        """
        attempts = 1 if self._port else _PORT_ATTEMPTS
        last: OSError | None = None
        for _ in range(attempts):
            try:
                self._start_all_on(self._port)
                return
            except OSError as error:
                last = error
                if error.errno != errno.EADDRINUSE:
                    break
        addresses = ", ".join(lb.address for lb in self)
        raise LabError(
            f"LB fleet could not listen on one port on all of {addresses} "
            f"(port {self._port or 'any'}): {last}; free the port or pass port=0"
        ) from last

    def _start_all_on(self, port: int) -> None:
        """Bind the first LB on ``port`` (0 = any), the others on the port it got."""
        started: list[LoadBalancer] = []
        try:
            for lb in self:
                lb._start(port)
                started.append(lb)
                port = lb.port
        except OSError:
            for lb in started:
                lb.stop()
            raise

    def stop(self) -> None:
        for lb in self:
            lb.stop()

    def __getitem__(self, name: str) -> LoadBalancer:
        try:
            return self._lbs[name]
        except KeyError:
            raise KeyError(f"no LB named {name!r}; the fleet has {sorted(self._lbs)}") from None

    def __iter__(self) -> Iterator[LoadBalancer]:
        return iter(list(self._lbs.values()))

    def __len__(self) -> int:
        return len(self._lbs)

    def close_connections(self) -> dict[str, int]:
        """``LoadBalancer.close_connections`` on every LB: ``{lb name: connections closed}``."""
        return {lb.name: lb.close_connections() for lb in self}

    def counters(self) -> dict[str, Any]:
        """``{lb name: LoadBalancer.counters(), ..., "total": their sum}``."""
        per_lb = {lb.name: lb.counters() for lb in self}
        return {**per_lb, "total": _sum_counts(list(per_lb.values()))}

    def request_log(
        self, since: float | None = None, client: str | None = None, operation: str | None = None
    ) -> list[RequestRecord]:
        """Every LB's kept records, filtered as in ``LoadBalancer.request_log``, by time."""
        records = [record for lb in self for record in lb.request_log(since, client, operation)]
        return sorted(records, key=lambda r: r.time)
