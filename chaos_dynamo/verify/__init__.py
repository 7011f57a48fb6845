"""``chaos-dynamo verify``: a CI gate over Chaos Toolkit experiments.

::

    experiments.py  paths -> checked experiments (JSON, method, the chaos-dynamo extension)
    schedule.py     which experiments may share a running lab at the same time
    verdict.py      a journal -> the verdict and its failures (pure)
    core.py         run experiments on labs (chaos_dynamo.runner), Outcome per experiment
    junit.py        outcomes -> JUnit XML
    summary.py      outcomes -> Markdown / plain-text tables
    command.py      the command: check, run, report, exit code

The modules are imported by name (``chaos_dynamo.verify.core``); this package imports none
of them, so :mod:`chaos_dynamo.runner` can use the verdict rules without a cycle.
"""
