"""Blast-radius guards: what a destructive activity may touch, dry runs, and stop conditions.

- :mod:`.target` / :mod:`.guard`: the lab and loopback endpoints are always allowed; a real
  AWS target only when the experiment names the account (confirmed by STS), the region and the
  hosted zone.
- :mod:`.dryrun`: print the exact change batches a run would send, and send none.
- :mod:`.stop`: a Chaos Toolkit control that checks the user's guard probes during the method
  and interrupts and rolls back the run when one fails.
"""
