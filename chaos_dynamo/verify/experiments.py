"""Experiment files as verify takes them: paths expanded, every file loaded and checked
before anything runs.

An experiment declares its purpose, and what it touches, in its ``extensions``::

    "extensions": [{"name": "chaos-dynamo", "expect": "deviate",
                    "deviates": ["endpoint-resolves"], "namespaces": ["endpoint:dynamodb"]}]

``expect``: ``hold`` (the default; the hypothesis must hold throughout) or ``deviate`` (a
reproduction: the fault must break the hypothesis and the rollbacks restore service).
``deviates``: the probes a reproduction must deviate on. ``namespaces``: the parts of a
shared lab the experiment changes; experiments run side by side on one lab only when their
namespaces are disjoint, and one that declares none runs alone (:mod:`.schedule`).

An experiment whose configuration names a lab namespace (``chaos_dynamo_namespace``, or
``$CHAOS_DYNAMO_NAMESPACE``; docs/namespaces.md) acts on that namespace's parts only, so
its scope is ``namespace:<name>`` (with whatever it declares): experiments in different
namespaces run together, two in the same namespace never do.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.state import configured_namespace
from chaos_dynamo.verify.checks import EXTENSION, check_experiment

EXPECTATIONS = ("deviate", "hold")
KEYS = ("name", "expect", "deviates", "namespaces")


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment file that passed every check, with what verify needs from it.

    Attributes:
        path: the file.
        title: its ``title``.
        expect: ``hold`` or ``deviate``.
        namespaces: what it changes on a shared lab; None when it declares nothing and
            names no lab namespace (it then runs alone).
        namespace: the lab namespace its configuration names, "" for none.
    """

    path: Path
    title: str
    expect: str
    namespaces: frozenset[str] | None
    namespace: str = ""  # the lab namespace its configuration names ("" for none)

    @property
    def stem(self) -> str:
        return self.path.stem


def load_experiment(path: Path) -> dict[str, Any]:
    """The experiment at ``path`` as JSON; ConfigError when it is unreadable, not JSON, or
    not a Chaos Toolkit experiment (no ``method``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"is not valid JSON ({exc})", "fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot be read ({exc})", "give a readable experiment file") from None
    if not is_experiment(data):
        raise ConfigError(str(path), "is not a Chaos Toolkit experiment (no \"method\")",
                          "see experiments/ for examples")
    return dict(data)


def is_experiment(data: object) -> bool:
    """Whether parsed JSON looks like a Chaos Toolkit experiment (an object with a method)."""
    return isinstance(data, dict) and "method" in data


def extension(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment's chaos-dynamo extension ({} when it has none).

    Raises:
        ConfigError: ``extensions`` is not a list, the extension appears twice, or it has a
            key chaos-dynamo does not know (a misspelt ``expect`` would silently mean
            ``hold``).
    """
    extensions = experiment.get("extensions", []) or []
    if not isinstance(extensions, list):
        raise ConfigError("extensions", f"{extensions!r} is not a list", "make it a list of objects")
    ours = [e for e in extensions if isinstance(e, dict) and e.get("name") == EXTENSION]
    if len(ours) > 1:
        raise ConfigError(f"extensions[{EXTENSION}]", "appears more than once", "merge them into one")
    if not ours:
        return {}
    unknown = sorted(set(ours[0]) - set(KEYS))
    if unknown:
        raise ConfigError(f"extensions[{EXTENSION}]", f"has unknown key(s) {unknown}",
                          f"use only {list(KEYS)}")
    return dict(ours[0])


def expectation(experiment: dict[str, Any]) -> str:
    """The experiment's declared purpose: ``deviate`` or ``hold``."""
    value = extension(experiment).get("expect", "hold")
    if value not in EXPECTATIONS:
        raise ConfigError(f"extensions[{EXTENSION}].expect", f"{value!r} is not known",
                          f"use one of {list(EXPECTATIONS)}")
    return str(value)


def must_deviate_on(experiment: dict[str, Any]) -> list[str]:
    """Names of the probes a reproduction must deviate on (``"deviates"`` in the extension).

    Without it, any deviating probe counts; with it, a deviation for another reason (say a
    slow round trip) is not mistaken for the outage the experiment is about.
    """
    ext = extension(experiment)
    if "deviates" not in ext:
        return []
    value = ext["deviates"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"extensions[{EXTENSION}].deviates", f"{value!r} is not a list of probe names",
                          "list the steady-state probes that must fail, e.g. [\"endpoint-resolves\"]")
    return list(value)


def namespaces(experiment: dict[str, Any]) -> frozenset[str] | None:
    """What the experiment changes on a shared lab (``"namespaces"``); None: not declared."""
    ext = extension(experiment)
    if "namespaces" not in ext:
        return None
    value = ext["namespaces"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"extensions[{EXTENSION}].namespaces", f"{value!r} is not a list of names",
                          "list what the experiment changes, e.g. [\"endpoint:dynamodb.us-east-1.amazonaws.com\"], "
                          "or leave the key out to run it alone")
    return frozenset(v.strip() for v in value)


NAMESPACE_SCOPE = "namespace:"
"""The scope of an experiment in lab namespace N is ``namespace:N``."""


def lab_namespace(experiment: dict[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The lab namespace the experiment's activities will act in, as they will see it: the
    configuration's ``chaos_dynamo_namespace`` (a string, or ``{"type": "env", "key": K,
    "default": D}``), else ``$CHAOS_DYNAMO_NAMESPACE``; "" for the lab's own parts. The
    lookup activities make (:func:`chaos_dynamo.lab.state.configured_namespace`).

    Raises:
        ConfigError: the value is neither, or not a namespace name.
    """
    return configured_namespace(experiment.get("configuration"), environ, where="configuration.")


def scope(experiment: dict[str, Any], environ: Mapping[str, str] | None = None) -> frozenset[str] | None:
    """What the experiment may change on a shared lab: its declared namespaces and, in a lab
    namespace N, ``namespace:N``; None (it runs alone) when it has neither."""
    declared = namespaces(experiment)
    name = lab_namespace(experiment, environ)
    if not name:
        return declared
    return (declared or frozenset()) | {NAMESPACE_SCOPE + name}


def inspect(path: Path) -> ExperimentSpec:
    """Load and check one experiment file: JSON, a method, the chaos-dynamo extension, and
    what ``chaos validate`` checks (activity modules, functions and arguments).

    Raises:
        ConfigError: naming the file and the field.
    """
    experiment = load_experiment(path)
    try:
        expect = expectation(experiment)
        must_deviate_on(experiment)
        scoped = scope(experiment)
        namespace = lab_namespace(experiment)
        check_experiment(experiment)  # configuration, deviates, activities: each error names its field
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.field}", exc.problem, exc.fix) from None
    _chaos_validate(path, experiment)
    return ExperimentSpec(path, str(experiment.get("title", path.stem)), expect, scoped, namespace)


def _chaos_validate(path: Path, experiment: dict[str, Any]) -> None:
    """What `chaos run` would refuse, refused now, before any lab starts."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    try:
        ensure_experiment_is_valid(copy.deepcopy(experiment))
    except ChaosException as exc:
        raise ConfigError(str(path), f"chaos would refuse it: {exc}",
                          f"fix the experiment (`chaos validate {path}` says the same)") from None


def expand(paths: Sequence[Path], note: Callable[[str], None]) -> list[ExperimentSpec]:
    """The experiments named by ``paths``, each checked with :func:`inspect`.

    A directory stands for its ``*.json`` files that are experiments, sorted, not
    recursive; other JSON files there are skipped (``note`` says which). A file named
    explicitly must be an experiment. The same file named twice runs once; two files with
    the same name (their journals would collide) are refused.

    Raises:
        ConfigError: a path does not exist, a directory holds no experiment, or a file is
            not a valid experiment.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = _experiments_in(path, note)
            if not found:
                raise ConfigError(str(path), "holds no Chaos Toolkit experiment (*.json with a \"method\")",
                                  "give a directory of experiments or the experiment files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(str(path), "does not exist", "give an experiment file or a directory of them")
    unique = list(dict.fromkeys(f.resolve() for f in files))
    specs = [inspect(f) for f in unique]
    _refuse_same_stems(specs)
    return specs


def _experiments_in(directory: Path, note: Callable[[str], None]) -> list[Path]:
    found = []
    for path in sorted(directory.glob("*.json")):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            found.append(path)  # a broken experiment is bad input, never silently skipped
            continue
        if is_experiment(data):
            found.append(path)
        else:
            note(f"skipped {path}: not a Chaos Toolkit experiment (no \"method\")")
    return found


def _refuse_same_stems(specs: Sequence[ExperimentSpec]) -> None:
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.stem in seen:
            raise ConfigError(str(spec.path), f"has the same name as {seen[spec.stem]}, so their journals "
                              f"({spec.stem}.json) would collide", "rename one of them")
        seen[spec.stem] = spec.path
