"""The pre-release dependency audit: ``chaos-dynamo audit [OPTIONS] [--] COMMAND...``.

It runs a command (a test suite, a smoke script, the service itself) on the lab with the
Python shim's botocore hooks on, reads what it did from the call logs and the lab's DNS
and LB logs, and reports every AWS dependency it saw and the risks the us-east-1 outage of
October 2025 exposed. Layout, from the edge in:

- :mod:`~chaos_dynamo.audit.command`: the CLI's options, outputs and exit codes;
- :mod:`~chaos_dynamo.audit.run`: the lab, the command, the optional outage, the logs (I/O);
- :mod:`~chaos_dynamo.audit.static`: the ``ast`` scan of a project's client construction;
- :mod:`~chaos_dynamo.audit.observe`: dependencies from the recorded history (pure);
- :mod:`~chaos_dynamo.audit.rules`: the risk rules and their thresholds (pure);
- :mod:`~chaos_dynamo.audit.catalogue`: control-plane operations, host names;
- :mod:`~chaos_dynamo.audit.report`: the JSON document (version 1), baseline and gate;
- :mod:`~chaos_dynamo.audit.render`: Markdown and Mermaid from the document.

docs/audit.md is the user's guide.
"""
