"""Failover hypotheses: does health-check-driven failover stay calm?

In us-east-1, new instances came up before their network state had propagated; health
checks saw them failing, nodes flapped in and out of DNS, and automatic AZ failover removed
capacity again and again. This package holds the faults that rehearse it (``actions``:
rollouts with a propagation delay, intermittent targets, a degraded AZ), the probes that
judge a name's DNS answer history (``probes``: flaps, capacity removed, minimum capacity,
time degraded, PRIMARY/SECONDARY oscillation) and two reference failover controllers
(``reference``: naive and hardened, as real processes writing Route 53 through the lab).
"""
