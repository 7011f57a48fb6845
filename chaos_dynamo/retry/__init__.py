"""Retry hypotheses: how a service retries when its DynamoDB endpoint's name stops resolving.

* :mod:`chaos_dynamo.retry.measure`: pure measurements over the lab's logs (LB requests,
  DNS queries, the endpoint's availability timeline) and a service's call log;
* :mod:`chaos_dynamo.retry.probes`: the Chaos Toolkit probes that fetch those logs from the
  lab and return one number each;
* :mod:`chaos_dynamo.retry.verdict`: the ``probes/retry`` command (one JSON verdict, exit 0/1/2).

What each number means, its unit and a sensible tolerance: ``docs/probes/retry.md``.
"""
