"""What a lease fleet asks of its store, and what comes back.

A fleet (:mod:`chaos_dynamo.lease.fleet`) is a pure state machine: it emits :class:`Op`
values and is told each :class:`Result`. Two drivers carry the ops: the lab driver
(boto3 through the endpoint's name, real threads and sockets) and the in-memory model
(:mod:`chaos_dynamo.lease.sim`). Both give every op the same meaning:

- ``renew``: UpdateItem ``SET expires_at = :e, version = :v + 1`` if ``version = :v AND
  owner = :me``; else ``CONDITION_FAILED``.
- ``read``: a consistent GetItem; ``Result.item`` is the lease, or None when absent.
- ``acquire``: PutItem ``{key, owner: me, expires_at: :e, version: :v + 1}`` if
  ``attribute_not_exists(key) OR (version = :v AND (owner = :me OR expires_at < :now))``,
  where ``:v`` is the version the last read saw (0 when absent); else ``CONDITION_FAILED``.
  A live lease of another owner can therefore never be taken.

``TIMEOUT`` means the client stopped waiting after ``Op.timeout`` seconds; the store may
still have applied the write (a client that gives up does not take its request back).
``ERROR`` is anything else that failed (the endpoint resolving to nothing, a refused
connection, a throttling or server error).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    RENEW = "renew"
    READ = "read"
    ACQUIRE = "acquire"


class Outcome(enum.StrEnum):
    OK = "ok"
    CONDITION_FAILED = "condition_failed"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LeaseItem:
    """One lease as stored: who holds it, until when (epoch seconds), at which version."""

    key: str
    owner: str
    expires_at: float
    version: int


@dataclass(frozen=True, slots=True)
class Op:
    """One store operation a fleet wants sent now.

    Attributes:
        id: unique within the fleet; the matching :class:`Result` carries it back.
        kind: renew, read or acquire (see the module docstring).
        key: the lease's key.
        owner: the fleet's owner id (written by renew/acquire, checked by renew).
        version: the version the condition expects (renew, acquire); unused by read.
        expires_at: the expiry to write (renew, acquire), epoch seconds.
        now: the fleet's clock when the op was made (acquire's ``expires_at < :now``).
        timeout: seconds the client waits for the answer before it counts as TIMEOUT.
    """

    id: int
    kind: Kind
    key: str
    owner: str
    version: int
    expires_at: float
    now: float
    timeout: float


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to one :class:`Op`."""

    op_id: int
    outcome: Outcome
    item: LeaseItem | None = None  # read: the current lease, or None when there is none
    detail: str = ""  # for ERROR: the error code or a short reason
