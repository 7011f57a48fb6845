"""Checks of an experiment's own fields, each error naming the field by its path.

``chaos validate`` refuses much of the same, but words it as chaoslib does ("could not find
Python module ... in activity ..."), stops with a traceback on some shapes (an ``env``
configuration entry without a ``key``), and leaves ``deviates`` alone. These run first, so
the message says which field to change and how, e.g.
``method[0].provider.func: chaos_dynamo.endpoint.actions has no function 'empty'; did you
mean 'empty_endpoint'?``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any

from chaos_dynamo.errors import ConfigError

__all__ = ["EXTENSION", "check_experiment"]

EXTENSION = "chaos-dynamo"
"""The name of chaos-dynamo's entry in an experiment's ``extensions`` (the one definition)."""
_CONTEXT_ARGUMENTS = ("configuration", "secrets")
"""Arguments chaoslib passes itself; an experiment never lists them."""


def check_experiment(experiment: Mapping[str, Any]) -> None:
    """Check the configuration's environment entries, ``deviates`` and every Python
    activity and control (module, function, arguments).

    Raises:
        ConfigError: naming the field, e.g. ``configuration.endpoint`` or
            ``method[0].provider.arguments.seconds``.
    """
    check_configuration(experiment.get("configuration"))
    check_deviates(experiment)
    for where, provider in _python_providers(experiment):
        check_provider(where, provider)


def check_configuration(configuration: object) -> None:
    """Every ``{"type": "env"}`` entry names a variable that is set, or has a default."""
    if configuration is None:
        return
    if not isinstance(configuration, Mapping):
        raise ConfigError("configuration", f"{configuration!r} is not an object",
                          'write it as {"name": value, ...}')
    for name, value in configuration.items():
        if not isinstance(value, Mapping) or value.get("type") != "env":
            continue
        key = value.get("key")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"configuration.{name}.key", f"{key!r} is not an environment variable name",
                              'name the variable, e.g. {"type": "env", "key": "MY_VAR", "default": ""}')
        if "default" not in value and key not in os.environ:
            raise ConfigError(f"configuration.{name}", f"reads the environment variable {key}, which is not set",
                              f"set {key} before the run, or give the entry a \"default\"")


def check_deviates(experiment: Mapping[str, Any]) -> None:
    """The probes ``deviates`` names are probes of the steady-state hypothesis: another name
    could never deviate, so the experiment would fail for a typo."""
    extensions = experiment.get("extensions")
    ours = [e for e in extensions if isinstance(e, Mapping) and e.get("name") == EXTENSION] \
        if isinstance(extensions, list) else []
    wanted = ours[0].get("deviates") if ours else None
    hypothesis = experiment.get("steady-state-hypothesis")
    probes = hypothesis.get("probes") if isinstance(hypothesis, Mapping) else None
    if not isinstance(wanted, list) or not isinstance(probes, list):
        return
    names = [p.get("name") for p in probes if isinstance(p, Mapping)]
    for name in wanted:
        if name not in names:
            raise ConfigError(f"extensions[{EXTENSION}].deviates", f"{name!r} is not a probe of the steady-state "
                              "hypothesis", f"name some of its probes: {names}")


def check_provider(where: str, provider: Mapping[str, Any]) -> None:
    """A Python provider's module imports, has the function, and gets exactly its arguments."""
    module_name = provider.get("module")
    if not isinstance(module_name, str) or not module_name.strip():
        raise ConfigError(f"{where}.module", f"{module_name!r} is not a module name",
                          "give the module path, e.g. chaos_dynamo.endpoint.actions")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}.module", f"{module_name!r} cannot be imported ({exc})",
                          _suggest(module_name, _activity_modules(), "check the module path (chaos-dynamo's "
                                   "activities are in chaos_dynamo.<area>.actions and .probes)",
                                   cutoff=0.85)) from None
    if "func" not in provider and where.startswith("controls"):
        return  # a control module: chaoslib calls its hooks
    func_name = provider.get("func")
    func = getattr(module, func_name, None) if isinstance(func_name, str) else None
    public = [str(n) for n in getattr(module, "__all__", [])] or \
        [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
    if func is None or not callable(func):
        raise ConfigError(f"{where}.func", f"{module_name} has no function {func_name!r}",
                          _suggest(str(func_name), public, f"use one of {public}"))
    arguments = provider.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        raise ConfigError(f"{where}.arguments", f"{arguments!r} is not an object",
                          'give the arguments by name, e.g. {"seconds": 5}')
    _check_arguments(f"{where}.arguments", f"{module_name}.{func_name}", func, arguments)


def _check_arguments(where: str, name: str, func: Any, arguments: Mapping[str, Any]) -> None:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return
    kinds = {p.kind for p in parameters.values()}
    accepted = [n for n, p in parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in _CONTEXT_ARGUMENTS]
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        for argument in arguments:
            if argument not in accepted:
                raise ConfigError(f"{where}.{argument}", f"is not an argument of {name}",
                                  _suggest(str(argument), accepted, f"use some of {accepted}"))
    for argument, parameter in parameters.items():
        required = parameter.default is parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        if required and argument not in _CONTEXT_ARGUMENTS and argument not in arguments:
            raise ConfigError(f"{where}.{argument}", f"is missing: {name} needs it",
                              f"add \"{argument}\" to the activity's arguments")


def _python_providers(experiment: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    hypothesis = experiment.get("steady-state-hypothesis")
    sections = [("steady-state-hypothesis.probes",
                 hypothesis.get("probes") if isinstance(hypothesis, Mapping) else None),
                ("method", experiment.get("method")), ("rollbacks", experiment.get("rollbacks")),
                ("controls", experiment.get("controls"))]
    for section, activities in sections:
        if not isinstance(activities, list):
            continue  # chaoslib's validation words the shape errors
        for index, activity in enumerate(activities):
            provider = activity.get("provider") if isinstance(activity, Mapping) else None
            if isinstance(provider, Mapping) and provider.get("type") == "python":
                yield f"{section}[{index}].provider", provider


def _activity_modules() -> list[str]:
    """chaos-dynamo's activity modules (``chaos_dynamo.<area>.actions`` / ``.probes``), unimported."""
    import chaos_dynamo

    found = []
    for package in pkgutil.iter_modules(chaos_dynamo.__path__):
        if package.ispkg:
            path = [os.path.join(p, package.name) for p in chaos_dynamo.__path__]
            found += [f"chaos_dynamo.{package.name}.{m.name}" for m in pkgutil.iter_modules(path)
                      if m.name in ("actions", "probes", "control")]
    return sorted(found)


def _suggest(wrong: str, known: list[str], otherwise: str, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(wrong, known, n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}? ({otherwise})" if close else otherwise
