"""Lease hypotheses: does a lease-holding service survive a mass expiry, or collapse on recovery?

The folder, by layer:

- ``ops`` and ``timeline``: the shared vocabulary (a store operation and its result; one
  sample of a lease table over time, and the JSON-lines timeline file).
- ``schema`` / ``table``: the user's lease table described by configuration, read page by
  page (never written, except by the ``expire_leases`` fault).
- ``measure``: pure checkers over a timeline (live fraction, time to recover, goodput,
  the collapse verdict, leases held by two owners).
- ``watch`` / ``control``: a sampler that records the timeline for a whole experiment.
- ``probes`` / ``actions``: the Chaos Toolkit activities.
- ``fleet`` / ``managers``: the reference lease fleets as pure state machines (same code
  in the lab and in memory); ``sim``: the in-memory model; ``driver`` / ``reference``:
  the real process on the lab.
"""
