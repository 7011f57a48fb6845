"""Static scan: every boto3/botocore client a project's code makes, read with ``ast``.

A run exercises only the code paths it took; the scan finds the rest. It recognises

- ``boto3.client(...)`` / ``boto3.resource(...)`` (and ``from boto3 import client``),
- ``boto3.Session(...).client(...)``, ``boto3.session.Session().resource(...)``,
- ``<anything named *session*>.client(...)`` / ``.resource(...)`` (``session.client``,
  ``self._session.client``),
- ``botocore.session.get_session().create_client(...)`` and ``<*session*>.create_client(...)``,

and reads the service, ``region_name``, ``endpoint_url`` and ``config``. A ``config`` is
read when it is a ``Config(...)`` call in place, or a name assigned a ``Config(...)`` call in
the same module (the nearest assignment above the construction); its ``retries`` (mode,
``max_attempts``, ``total_max_attempts``), ``connect_timeout``, ``read_timeout`` and
``region_name`` are taken when they are literals. Anything else is *unresolved* and is not
judged: the scan never guesses a value it cannot read.

The static rules judge only constructions the run did not exercise (what the run saw is
judged from the real client, with botocore's resolved values).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaos_dynamo.audit.findings import SEVERITIES, Finding
from chaos_dynamo.audit.rules import MAX_CONFIGURED_ATTEMPTS, TIMEOUT_LIMIT
from chaos_dynamo.errors import ConfigError

__all__ = ["Construction", "scan", "scan_source", "mark_exercised", "static_findings", "SKIP_DIRS"]

SKIP_DIRS = frozenset({".git", ".hg", ".venv", "venv", "env", ".tox", ".nox", "node_modules",
                       "__pycache__", "site-packages", "build", "dist", ".mypy_cache", ".ruff_cache"})
"""Directories the scan does not enter (virtualenvs, caches, build output)."""

_FACTORIES = {"boto3.client": "client", "boto3.resource": "resource"}
_SESSIONS = frozenset({"boto3.Session", "boto3.session.Session"})
_BOTOCORE_SESSIONS = frozenset({"botocore.session.get_session", "botocore.session.Session"})
_CONFIGS = frozenset({"botocore.config.Config", "botocore.client.Config"})
_TIMEOUTS = ("connect_timeout", "read_timeout")


@dataclass(frozen=True)
class Construction:
    """One place the code makes a client or resource.

    ``config`` is ``none`` (no config given), ``inline`` (a ``Config(...)`` in the call),
    ``variable NAME`` (read from an assignment in the module) or ``unresolved``. Options
    present with a value the scan cannot read are listed in ``unresolved``.
    """

    path: str
    line: int
    end_line: int
    function: str
    kind: str
    service: str
    region: str | None = None
    endpoint_url: str | None = None
    config: str = "none"
    retry_mode: str | None = None
    max_attempts: int | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    unresolved: tuple[str, ...] = ()
    exercised: bool = False

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "end_line": self.end_line, "function": self.function,
                "kind": self.kind, "service": self.service, "region": self.region,
                "endpoint_url": self.endpoint_url, "config": self.config, "retry_mode": self.retry_mode,
                "max_attempts": self.max_attempts, "connect_timeout": self.connect_timeout,
                "read_timeout": self.read_timeout, "unresolved": list(self.unresolved),
                "exercised": self.exercised}


# --- reading one module -----------------------------------------------------------------------

def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from the module's imports."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    out[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _last_name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _literal(node: ast.AST | None) -> tuple[bool, Any]:
    """(True, value) for a literal (negative numbers included), else (False, None)."""
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


class _Module:
    """One parsed module: its imports, its ``Config(...)`` assignments and its constructions."""

    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.aliases = _aliases(tree)
        self.configs: dict[str, list[tuple[int, ast.Call]]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and self._is_config(node.value):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.configs.setdefault(target.id, []).append((node.lineno, node.value))

    def qualified(self, node: ast.AST) -> str | None:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        full = self.aliases.get(head)
        if full is None:
            return None
        return f"{full}.{rest}" if rest else full

    def _is_config(self, call: ast.Call) -> bool:
        return self.qualified(call.func) in _CONFIGS

    def _kind(self, call: ast.Call) -> str | None:
        """``client``/``resource`` when ``call`` makes one, else None."""
        name = self.qualified(call.func)
        if name in _FACTORIES:
            return _FACTORIES[name]
        func = call.func
        if not isinstance(func, ast.Attribute) or func.attr not in ("client", "resource", "create_client"):
            return None
        receiver = func.value
        made_by = self.qualified(receiver.func) if isinstance(receiver, ast.Call) else None
        sessionish = "session" in _last_name(receiver).lower()
        if func.attr == "create_client":
            return "client" if made_by in _BOTOCORE_SESSIONS or sessionish else None
        return func.attr if made_by in _SESSIONS or sessionish else None

    def constructions(self) -> Iterator[Construction]:
        yield from self._visit(self.tree, "<module>")

    def _visit(self, node: ast.AST, scope: str) -> Iterator[Construction]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child.name if scope == "<module>" else f"{scope}.{child.name}"
                yield from self._visit(child, inner)
                continue
            if isinstance(child, ast.Call):
                kind = self._kind(child)
                if kind is not None:
                    yield self._construction(child, kind, scope)
            yield from self._visit(child, scope)

    def _construction(self, call: ast.Call, kind: str, scope: str) -> Construction:
        service_node = call.args[0] if call.args else _keyword(call, "service_name")
        ok, service = _literal(service_node)
        built = Construction(self.path, call.lineno, call.end_lineno or call.lineno, scope, kind,
                             str(service) if ok and isinstance(service, str) else "?")
        unresolved: list[str] = []
        for option in ("region_name", "endpoint_url"):
            node = _keyword(call, option)
            ok, value = _literal(node)
            if node is not None and not (ok and isinstance(value, str)):
                unresolved.append(option)
            elif ok:
                built = replace(built, **{"region" if option == "region_name" else option: value})
        config = _keyword(call, "config")
        if config is not None:
            built = self._with_config(built, config, unresolved)
        return replace(built, unresolved=tuple(unresolved))

    def _with_config(self, built: Construction, node: ast.expr, unresolved: list[str]) -> Construction:
        source = "inline"
        if isinstance(node, ast.Name):
            earlier = [c for line, c in self.configs.get(node.id, []) if line <= built.line]
            if not earlier:
                return replace(built, config="unresolved")
            source = f"variable {node.id}"
            node = earlier[-1]
        if not (isinstance(node, ast.Call) and self._is_config(node)):
            return replace(built, config="unresolved")
        values = _config_values(node, unresolved)
        if built.region is not None:  # region_name given to the construction wins over the Config's
            values.pop("region", None)
        return replace(built, config=source, **values)


def _config_values(call: ast.Call, unresolved: list[str]) -> dict[str, Any]:
    """The literal settings of a ``Config(...)`` call; options it cannot read go to ``unresolved``."""
    values: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            unresolved.append("**config")
            continue
        ok, value = _literal(keyword.value)
        if keyword.arg in _TIMEOUTS:
            if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
                values[keyword.arg] = float(value)
            else:
                unresolved.append(keyword.arg)
        elif keyword.arg == "region_name":
            if ok and isinstance(value, str):
                values["region"] = value
            else:
                unresolved.append("region_name")
        elif keyword.arg == "retries":
            if ok and isinstance(value, dict):
                mode = value.get("mode")
                values["retry_mode"] = mode if isinstance(mode, str) else None
                total = value.get("total_max_attempts")
                retries = value.get("max_attempts")
                values["max_attempts"] = (total if isinstance(total, int) else
                                          retries + 1 if isinstance(retries, int) else None)
            else:
                unresolved.append("retries")
    return values


# --- files -----------------------------------------------------------------------------------

def _python_files(path: Path, root: Path, skipped: list[str]) -> Iterator[Path]:
    """``path`` itself when it is a file, else the ``.py`` files under it, without following
    symbolic links to directories (a link to a parent would loop); a directory that cannot
    be listed goes to ``skipped`` with the reason."""
    if path.is_file():
        yield path
        return

    def unreadable(exc: OSError) -> None:
        where = display_path(Path(exc.filename), root) if exc.filename else display_path(path, root)
        skipped.append(f"{where}: {type(exc).__name__}: {exc.strerror or exc}")

    for folder, dirs, files in os.walk(path, onerror=unreadable, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        yield from (Path(folder, name) for name in sorted(files) if name.endswith(".py"))


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when it is inside it, else absolute (POSIX separators)."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def scan_source(source: str, path: str) -> list[Construction]:
    """The constructions in one module's source (``path`` is how the report names it).

    Raises:
        SyntaxError: the source is not Python.
    """
    return list(_Module(ast.parse(source, filename=path), path).constructions())


def scan(paths: Iterable[Path], root: Path) -> tuple[list[Construction], list[str]]:
    """Every construction under ``paths`` (files or directories), and the files and
    directories skipped (unreadable, not Python 3, or too deeply nested to parse), each
    with the reason.

    Raises:
        ConfigError: a path does not exist.
    """
    found: list[Construction] = []
    skipped: list[str] = []
    for path in paths:
        if not path.exists():
            raise ConfigError("--static", f"{str(path)!r} does not exist", "give a Python file or a directory")
        for file in _python_files(path, root, skipped):
            shown = display_path(file, root)
            try:
                found += scan_source(file.read_text(encoding="utf-8"), shown)
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                # RecursionError/MemoryError: a generated or hostile file nested deeper than
                # the parser (or this scan's walk of its tree) can go.
                skipped.append(f"{shown}: {type(exc).__name__}: {exc or 'too large or too deeply nested to parse'}")
    unique = {(c.path, c.line, c.end_line): c for c in found}
    return sorted(unique.values(), key=lambda c: (c.path, c.line)), skipped


def mark_exercised(constructions: list[Construction], sites: Iterable[str]) -> list[Construction]:
    """Mark each construction the run made a client from (a call site ``path:line`` inside it)."""
    lines: dict[str, set[int]] = {}
    for site in sites:
        path, _, line = site.rpartition(":")
        if line.isdigit():
            lines.setdefault(path, set()).add(int(line))
    return [replace(c, exercised=any(c.line <= n <= c.end_line for n in lines.get(c.path, ())))
            for c in constructions]


# --- static rules ------------------------------------------------------------------------------

@dataclass
class _Group:
    severity: str
    title: str
    evidence: str
    fix: str
    locations: list[str] = field(default_factory=list)


def _judge(c: Construction, other_regions: set[str]) -> Iterator[tuple[str, str, str, str, str]]:
    """(rule, severity, title, evidence, fix) for one unexercised construction."""
    where = f"{c.kind} for {c.service} in {c.function}"
    if c.config != "unresolved":
        missing = [t for t in _TIMEOUTS if t not in c.unresolved
                   and (getattr(c, t) is None or getattr(c, t) > TIMEOUT_LIMIT)]
        if missing:
            yield ("timeouts-missing", "high" if len(missing) == 2 else "medium", "missing timeouts",
                   f"{where}: {' and '.join(missing)} not set (botocore waits 60 s)"
                   + (" - no config at all" if c.config == "none" else ""),
                   "pass Config(connect_timeout=2, read_timeout=5) or similar: a few seconds each")
        if c.retry_mode == "legacy" and c.max_attempts != 1:
            yield ("retry-legacy", "medium", "legacy retry mode", f"{where}: retries mode 'legacy'",
                   "use Config(retries={'mode': 'standard'}) (or 'adaptive')")
        elif c.retry_mode is None and "retries" not in c.unresolved and c.max_attempts != 1:
            yield ("retry-unset", "low", "retry mode not set",
                   f"{where}: no retries mode, so it depends on the botocore version and on "
                   "AWS_RETRY_MODE / the config file (legacy in older botocore)",
                   "set Config(retries={'mode': 'standard', 'total_max_attempts': 3})")
        if (c.max_attempts or 0) > MAX_CONFIGURED_ATTEMPTS:
            yield ("retry-max-attempts", "medium", f"{c.max_attempts} attempts per call",
                   f"{where}: {c.max_attempts} attempts per call configured",
                   "keep total_max_attempts at 3-5")
    if c.region == "us-east-1" and not other_regions:
        yield ("region-us-east-1", "high", "region pinned to us-east-1 in code",
               f"{where}: region_name='us-east-1' and no {c.service} client with another region in the "
               "scanned code", "read the region from configuration and make a client for a second "
               "region to fail over to")


def static_findings(constructions: list[Construction]) -> list[Finding]:
    """Findings for the constructions the run did not exercise, one per rule, service, file
    and function (with every line as a location); ids ``static-rule:service:path:function``."""
    regions: dict[str, set[str]] = {}
    for c in constructions:
        if c.region:
            regions.setdefault(c.service, set()).add(c.region)
    groups: dict[tuple[str, str, str, str], tuple[Construction, _Group]] = {}
    for c in constructions:
        if c.exercised:
            continue
        for rule, severity, title, evidence, fix in _judge(c, regions.get(c.service, set()) - {"us-east-1"}):
            key = (rule, c.service, c.path, c.function)
            if key not in groups:
                groups[key] = (c, _Group(severity, title, evidence, fix))
            group = groups[key][1]
            if SEVERITIES.index(severity) < SEVERITIES.index(group.severity):
                group.severity = severity
            group.locations.append(c.location)
    out = [Finding(f"static-{rule}:{service}:{path}:{function}", f"static-{rule}", g.severity,
                   f"{c.service}@{c.region or '?'}", g.title, g.evidence, g.fix, tuple(g.locations))
           for (rule, service, path, function), (c, g) in groups.items()]
    return sorted(out, key=lambda f: (SEVERITIES.index(f.severity), f.id))
