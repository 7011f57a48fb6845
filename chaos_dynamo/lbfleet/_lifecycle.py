"""What :class:`LoadBalancer` and :class:`LBFleet` share: use as a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class _StartStopContext:
    """Mixin: ``with x:`` runs ``x.start()``, and ``x.stop()`` on the way out, however it ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
