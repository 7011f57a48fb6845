"""Which experiments may run side by side on one shared lab.

An experiment declares the parts of the lab it changes as ``namespaces`` (see
:mod:`.experiments`). Two experiments whose namespaces overlap would break each other's
steady state, so they never run together; one that declares none may touch anything and runs
alone. The experiments of a batch run at the same time; the next batch starts when the whole
batch has finished, after one safety check of the lab (a check in the middle of a batch would
see, and undo, another experiment's fault).

Experiments that each have their own lab need none of this: any number run at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from chaos_dynamo.errors import ConfigError


def batches(scopes: Sequence[frozenset[str] | None], jobs: int) -> list[list[int]]:
    """Group experiments (given by their namespaces, in order) into batches for a shared lab.

    Greedy, in order: a batch starts with the first experiment not yet placed; an experiment
    without namespaces (None) forms a batch alone; otherwise later experiments join while
    their namespaces are disjoint from the batch's and it has fewer than ``jobs``. Every
    experiment is in exactly one batch; the result is deterministic.

    Args:
        scopes: each experiment's namespaces, None for one that declares none.
        jobs: the most experiments run at once (>= 1).

    Returns:
        Batches of indices into ``scopes``, each in ascending order.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError("jobs", f"{jobs!r} is not a positive number", "use --jobs 1 or more")
    pending = list(range(len(scopes)))
    result: list[list[int]] = []
    while pending:
        first = pending.pop(0)
        batch = [first]
        taken = scopes[first]
        if taken is not None:
            used = set(taken)
            for index in list(pending):
                if len(batch) >= jobs:
                    break
                scope = scopes[index]
                if scope is None or used & scope:
                    continue
                batch.append(index)
                used |= scope
                pending.remove(index)
        result.append(batch)
    return result
