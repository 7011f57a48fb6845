"""A service's own health, as it reports it: HTTP health checks and Prometheus metrics.

* :mod:`chaos_dynamo.health.probes`: Chaos Toolkit probes (``http_health``, ``http_status``,
  ``prometheus_metric``, ``seconds_to_healthy``) and a Prometheus text-format parser;
* :mod:`chaos_dynamo.health.verdict`: the ``probes/health`` command (one JSON verdict).

Only loopback URLs are read: the lab's services run on this machine.
"""
