"""Write the call log (:mod:`chaos_dynamo.calllog`) from botocore's own event hooks.

Every botocore client created after :func:`install` is described once, when it is made
(-> ``client`` event: service, region, endpoint, the retry mode and attempts botocore
resolved, the timeouts and whether the application set them, and the line of application
code that made it), and gets five handlers, all reading and writing one object kept in
botocore's per-call ``context`` dict (the same dict travels through every event of one
logical call, so many threads sharing a client, and a call made from inside another call's
handler, never mix their attempts up):

- ``before-call`` (first): a logical call begins -> ``call`` event (naming its client);
- ``before-send`` (last, so after adaptive mode's rate limiter has let the request go):
  once per attempt, before the HTTP send and so before the name is resolved -> ``attempt``;
- ``response-received`` (first): once per attempt, with the response or the exception,
  before ``needs-retry`` decides -> ``outcome``; ``dns`` is true when the exception was
  caused by a failed name lookup (``socket.gaierror``, urllib3's ``NameResolutionError``);
- ``after-call`` / ``after-call-error`` (first) -> ``end``.

No handler returns anything but None or touches botocore's arguments, so retry decisions
(``needs-retry``) and stubbing (``before-call`` responses) are exactly as without the hooks.
A handler never raises into the application: a failure is counted in :func:`stats` and
reported once on stderr.

Installing does not import botocore: when ``botocore.client`` is not loaded yet, a finder
on ``sys.meta_path`` patches ``BaseClient.__init__`` the moment it is, so a process that
never uses botocore pays for one tuple lookup per import. Clients created before
:func:`install` are not hooked. Standard library only at import time, as the shim.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chaos_dynamo.calllog import CallLogWriter
    from chaos_dynamo.clock import Clock

__all__ = ["EventSink", "ProcessLog", "install", "uninstall", "installed", "stats", "is_dns_failure"]

_MODULE = "botocore.client"
_UID = "chaos-dynamo-call-log"
_KEY = "chaos_dynamo_call"
"""Key of our per-call state in botocore's request context."""
_MARK = "_chaos_dynamo_call_hooks"


class EventSink(Protocol):
    def write(self, event: dict[str, Any]) -> None:
        """Store one call-log event; may raise (the hooks count it as a drop)."""


class ProcessLog:
    """The call log of this process: ``<dir>/<service>-<pid>.jsonl``.

    The file is opened at the first event (a process that never calls AWS leaves no file)
    and again in a forked child, which writes its own file under its own pid. With
    ``service`` None the name is ``calllog.service_name()`` when the file is opened.
    """

    def __init__(self, directory: str | os.PathLike[str], service: str | None = None) -> None:
        self.directory = os.path.abspath(directory)
        self.service = service
        self._writer: CallLogWriter | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None or self._pid != os.getpid():
            writer = self._open()
        writer.write(event)

    def _open(self) -> CallLogWriter:
        from chaos_dynamo.calllog import CallLogWriter, log_path, service_name

        with self._lock:
            pid = os.getpid()
            if self._writer is None or self._pid != pid:
                if self.service is None:
                    self.service = service_name()
                # The parent's writer (and its lock) are left alone in a forked child.
                self._writer = CallLogWriter(log_path(self.directory, self.service, pid))
                self._pid = pid
            return self._writer

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._writer is not None and self._pid == os.getpid():
                self._writer.close()
            self._writer = None


class _CallState:
    """What the hooks know about one logical call; lives in its botocore context."""

    __slots__ = ("id", "attempt", "open")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.attempt = 0
        self.open = False


class _Hooks:
    def __init__(self, sink: EventSink, service: str | None, now: Callable[[], float] | None) -> None:
        self.sink = sink
        self.service = service
        self.now = now
        self._lock = threading.Lock()
        self.counts = {"calls": 0, "attempts": 0, "events": 0, "dropped": 0, "clients": 0}
        self._reported = False

    def _count(self, key: str) -> int:
        with self._lock:
            self.counts[key] += 1
            return self.counts[key]

    def _emit(self, event: dict[str, Any]) -> None:
        self.sink.write(event)
        self._count("events")

    def drop(self, error: BaseException) -> None:
        self._count("dropped")
        if not self._reported:
            self._reported = True
            try:
                sys.stderr.write(f"chaos-dynamo call log: {type(error).__name__}: {error}; "
                                 "some botocore calls are not being logged\n")
            except Exception:  # stderr itself is gone: nothing left to tell
                pass

    def _service(self) -> str:
        service = self.service
        if service is None:
            from chaos_dynamo.calllog import service_name

            service = self.service = service_name()
        return service

    # --- the handlers' bodies; the caller catches everything -------------------------------
    def client(self, client: Any, caller: Any) -> None:
        """Hook a client botocore just made and describe it (``caller``: the frame that made it)."""
        pid = os.getpid()
        client_id = f"{pid}-c{self._count('clients')}"
        _register(client.meta.events, client_id)
        self._emit({"e": "client", "id": client_id, "t": self._time(), "pid": pid, "svc": self._service(),
                    **describe_client(client, caller)})

    def call(self, context: dict[str, Any], operation: str, api: str, request: Any = None,
             client_id: str = "") -> None:
        pid = os.getpid()
        state = _CallState(f"{pid}-{self._count('calls')}")
        context[_KEY] = state
        self._emit({"e": "call", "id": state.id, "t": self._time(), "op": operation, "api": api,
                    "svc": self._service(), "pid": pid, "th": threading.get_ident(),
                    "key": _request_key(request), "client": client_id})

    def attempt(self, context: dict[str, Any]) -> None:
        state = context.get(_KEY)
        if isinstance(state, _CallState):
            self._start_attempt(state, context)

    def _start_attempt(self, state: _CallState, context: dict[str, Any]) -> None:
        state.attempt = _botocore_attempt(context) or state.attempt + 1
        state.open = True
        self._count("attempts")
        self._emit({"e": "attempt", "id": state.id, "t": self._time(), "n": state.attempt})

    def outcome(self, context: dict[str, Any], response: Any, parsed: Any, exception: Any) -> None:
        state = context.get(_KEY)
        if not isinstance(state, _CallState):
            return
        if not state.open:
            # A before-send handler ahead of ours raised: botocore still counts the attempt.
            self._start_attempt(state, context)
        status = response.get("status_code") if isinstance(response, dict) else None
        error = _error_name(status, parsed, exception)
        self._close_attempt(state, status, error, is_dns_failure(exception))

    def _close_attempt(self, state: _CallState, status: Any, error: str | None, dns: bool) -> None:
        state.open = False
        self._emit({"e": "outcome", "id": state.id, "t": self._time(), "n": state.attempt,
                    "status": status if isinstance(status, int) else None, "error": error, "dns": dns})

    def end(self, context: dict[str, Any], http_response: Any, parsed: Any, exception: Any) -> None:
        state = context.pop(_KEY, None)
        if not isinstance(state, _CallState):
            return
        status = getattr(http_response, "status_code", None) if exception is None else None
        if not isinstance(status, int):
            status = None
        error = _error_name(status, parsed, exception)
        if error is not None and exception is None and context.get("error_code_override"):
            error = str(context["error_code_override"])  # what botocore raises (client.py)
        if state.open:  # botocore raised before response-received (e.g. parsing the response)
            self._close_attempt(state, None, error, is_dns_failure(exception))
        ok = exception is None and status is not None and status < 300
        if not ok and error is None:
            error = "NoResponse"
        self._emit({"e": "end", "id": state.id, "t": self._time(), "ok": ok, "error": error})

    def _time(self) -> float:
        now = self.now
        if now is None:
            from chaos_dynamo.clock import REAL_CLOCK

            now = self.now = REAL_CLOCK.now
        return now()


# --- what a client is: read once, when botocore has made it ------------------------------
_SDK_DIRS = tuple(f"{os.sep}{name}{os.sep}" for name in ("botocore", "boto3", "aiobotocore", "aioboto3"))
DEFAULT_TIMEOUT = 60.0
"""botocore's connect and read timeout when the application sets none (botocore.endpoint)."""


def describe_client(client: Any, caller: Any) -> dict[str, Any]:
    """What the call log records of a new client (the ``client`` event's fields but its id).

    A timeout counts as set by the application when the ``Config`` it passed names it
    (botocore keeps the options a ``Config`` was given in ``_user_provided_options``; the
    client's own merged config names every option, so the application's is read from
    botocore's ``create_client`` frame), or when it differs from botocore's default. The
    retry mode cannot be told apart so: botocore writes the resolved mode into the
    application's own ``retries`` dict before the client exists.
    """
    meta = client.meta
    config = meta.config
    model = meta.service_model
    site, function, given = _call_site(caller)
    user = getattr(given, "_user_provided_options", None) or {}
    retries = dict(getattr(config, "retries", None) or {})
    mode = str(retries.get("mode") or "legacy")
    connect, read = getattr(config, "connect_timeout", None), getattr(config, "read_timeout", None)
    return {
        "api": str(model.service_name), "prefix": str(model.endpoint_prefix or ""),
        "region": str(meta.region_name or ""), "endpoint": str(meta.endpoint_url or ""),
        "retry_mode": mode, "max_attempts": _max_attempts(client, mode, retries),
        "connect_timeout": connect, "connect_timeout_set": _is_set("connect_timeout", connect, user),
        "read_timeout": read, "read_timeout_set": _is_set("read_timeout", read, user),
        "pool": getattr(config, "max_pool_connections", None), "site": site, "func": function,
    }


def _is_set(option: str, value: Any, user: dict[str, Any]) -> bool:
    return option in user or (isinstance(value, (int, float)) and float(value) != DEFAULT_TIMEOUT)


def _max_attempts(client: Any, mode: str, retries: dict[str, Any]) -> int | None:
    """Attempts per call botocore will make, the first included (None when unknown).

    ``total_max_attempts`` when configured (botocore turns ``max_attempts`` into it);
    otherwise the mode's default for the service: standard and adaptive take
    ``botocore.retries.standard`` 's figure (4 for DynamoDB, else 3), legacy the service's
    entry in botocore's ``_retry.json`` (10 for DynamoDB, else 5).
    """
    total = retries.get("total_max_attempts")
    if isinstance(total, int):
        return total
    model = client.meta.service_model
    if mode in ("standard", "adaptive"):
        from botocore.retries import standard

        special = getattr(standard, "_SERVICE_MAX_ATTEMPTS", {})
        default = getattr(standard, "DEFAULT_MAX_ATTEMPTS", 3)
        return int(special.get(model.service_id.hyphenize(), default))
    if mode == "legacy":
        data = client._loader.load_data("_retry").get("retry", {})
        for section in (data.get(model.endpoint_prefix, {}), data):
            value = section.get("__default__", {}).get("max_attempts")
            if isinstance(value, int):
                return value
    return None


def _call_site(frame: Any) -> tuple[str, str, Any]:
    """``("file:line", function)`` of the first frame outside botocore and boto3, from
    ``frame`` outwards, and the ``Config`` the application passed (found on the way)."""
    given = None
    while frame is not None:
        code = frame.f_code
        if not any(part in code.co_filename for part in _SDK_DIRS):
            return f"{code.co_filename}:{frame.f_lineno}", code.co_name, given
        if given is None and code.co_name == "create_client" and code.co_filename.endswith("client.py"):
            given = frame.f_locals.get("client_config")
        frame = frame.f_back
    return "", "", given


def _botocore_attempt(context: dict[str, Any]) -> int:
    """botocore's own 1-based attempt number for this call (Endpoint keeps it in the context)."""
    retries = context.get("retries")
    number = retries.get("attempt") if isinstance(retries, dict) else None
    return number if isinstance(number, int) and number > 0 else 0


def _error_name(status: Any, parsed: Any, exception: Any) -> str | None:
    """The exception's class name, or the AWS error code of an HTTP error response."""
    if exception is not None:
        return type(exception).__name__
    if isinstance(status, int) and status >= 300:
        error = parsed.get("Error") if isinstance(parsed, dict) else None
        code = error.get("Code") if isinstance(error, dict) else None
        return str(code) if code else f"HTTP {status}"
    return None


def is_dns_failure(error: BaseException | None) -> bool:
    """True when ``error`` was caused by a failed name lookup.

    botocore raises ``EndpointConnectionError(error=NameResolutionError)``, which urllib3
    raised ``from`` the resolver's ``socket.gaierror``; the chain is walked through
    ``__cause__``, ``__context__``, botocore's ``kwargs["error"]`` and urllib3's ``reason``.
    """
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen or len(seen) > 32:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return True
        kwargs = getattr(current, "kwargs", None)
        todo.extend(x for x in (current.__cause__, current.__context__, getattr(current, "reason", None),
                                kwargs.get("error") if isinstance(kwargs, dict) else None)
                    if isinstance(x, BaseException))
    return False


# --- the handlers botocore calls --------------------------------------------------------
_hooks: _Hooks | None = None


def _request_key(request: Any) -> str:
    """A digest of what the call asks for (path, query and body), the same for every
    repetition of one request: an application's own retry loop re-sends the same request
    as a new botocore call, and the call log joins such calls into one logical call."""
    if not isinstance(request, dict):
        return ""
    digest = hashlib.blake2b(digest_size=8)
    for part in (request.get("url_path"), request.get("query_string"), request.get("body")):
        data = part if isinstance(part, bytes) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def _on_before_call(context: Any = None, model: Any = None, event_name: str = "", params: Any = None,
                    chaos_dynamo_client: str = "", **_: Any) -> None:
    hooks = _hooks
    if hooks is not None and isinstance(context, dict):
        try:
            parts = event_name.split(".")
            api = parts[1] if len(parts) > 1 else ""
            hooks.call(context, str(getattr(model, "name", "") or (parts[2] if len(parts) > 2 else "unknown")),
                       api, params, chaos_dynamo_client)
        except Exception as error:
            hooks.drop(error)


def _on_before_send(request: Any = None, **_: Any) -> None:
    hooks = _hooks
    context = getattr(request, "context", None)
    if hooks is not None and isinstance(context, dict):
        try:
            hooks.attempt(context)
        except Exception as error:
            hooks.drop(error)


def _on_response_received(context: Any = None, response_dict: Any = None, parsed_response: Any = None,
                          exception: Any = None, **_: Any) -> None:
    hooks = _hooks
    if hooks is not None and isinstance(context, dict):
        try:
            hooks.outcome(context, response_dict, parsed_response, exception)
        except Exception as error:
            hooks.drop(error)


def _on_after_call(context: Any = None, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
    hooks = _hooks
    if hooks is not None and isinstance(context, dict):
        try:
            hooks.end(context, http_response, parsed, None)
        except Exception as error:
            hooks.drop(error)


def _on_after_call_error(context: Any = None, exception: Any = None, **_: Any) -> None:
    hooks = _hooks
    if hooks is not None and isinstance(context, dict):
        try:
            hooks.end(context, None, None, exception if exception is not None else RuntimeError("unknown"))
        except Exception as error:
            hooks.drop(error)


def _register(emitter: Any, client_id: str = "") -> None:
    """Hook one client's event emitter (idempotent: botocore drops a repeated unique id).

    Each client has its own emitter (botocore copies the session's for every client), so
    ``before-call`` is bound to the client's id and every ``call`` event names its client.
    """
    emitter.register_first("before-call", functools.partial(_on_before_call, chaos_dynamo_client=client_id),
                           unique_id=f"{_UID}-call")
    emitter.register_last("before-send", _on_before_send, unique_id=f"{_UID}-attempt")
    emitter.register_first("response-received", _on_response_received, unique_id=f"{_UID}-outcome")
    emitter.register_first("after-call", _on_after_call, unique_id=f"{_UID}-end")
    emitter.register_first("after-call-error", _on_after_call_error, unique_id=f"{_UID}-error")


# --- patching botocore, now or when it is imported ----------------------------------------
_original_init: Any = None
_patched_class: Any = None


def _patch(module: Any) -> None:
    """Wrap ``botocore.client.BaseClient.__init__`` so every new client is hooked."""
    global _original_init, _patched_class
    cls = getattr(module, "BaseClient", None)
    if cls is None or getattr(cls.__init__, _MARK, False):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        hooks = _hooks
        if hooks is not None:
            try:
                hooks.client(self, sys._getframe(1))
            except Exception as error:
                hooks.drop(error)

    setattr(__init__, _MARK, True)
    _original_init, _patched_class = original, cls
    cls.__init__ = __init__


class _BotocoreFinder:
    """Finds nothing itself: it lets the real finder load ``botocore.client``, then patches it."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != _MODULE:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            _remove_finder()
            _patch(module)

        try:
            loader.exec_module = exec_and_patch
        except (AttributeError, TypeError):  # a loader that cannot be wrapped: patch later
            pass
        return spec

    def invalidate_caches(self) -> None:
        pass


_finder = _BotocoreFinder()


def _remove_finder() -> None:
    while _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def _after_fork_in_child() -> None:
    hooks = _hooks
    if hooks is not None:
        hooks._lock = threading.Lock()
        after_fork = getattr(hooks.sink, "after_fork", None)
        if callable(after_fork):
            after_fork()


_fork_hook_registered = False


# --- public API --------------------------------------------------------------------------
def install(sink: EventSink, *, service: str | None = None, clock: Clock | None = None) -> None:
    """Log every call of every botocore client created from now on to ``sink``.

    Args:
        sink: where events go, e.g. ``ProcessLog(directory, service)`` or a
            :class:`~chaos_dynamo.calllog.CallLogWriter`.
        service: the ``svc`` of every call; ``calllog.service_name()`` (read at the first
            call) by default.
        clock: wall clock for event times; the real one by default.
    """
    global _hooks, _fork_hook_registered
    _hooks = _Hooks(sink, service, clock.now if clock is not None else None)
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_registered = True
    module = sys.modules.get(_MODULE)
    if module is not None:
        _patch(module)
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Stop logging; clients hooked so far keep inert handlers. Puts ``BaseClient.__init__`` back."""
    global _hooks, _original_init, _patched_class
    _remove_finder()
    _hooks = None
    if _patched_class is not None and getattr(_patched_class.__init__, _MARK, False):
        _patched_class.__init__ = _original_init
    _original_init = _patched_class = None


def installed() -> bool:
    return _hooks is not None


def stats() -> dict[str, int]:
    """Counts since :func:`install`: calls, attempts, events written, dropped, clients hooked."""
    hooks = _hooks
    if hooks is None:
        return {}
    with hooks._lock:
        return dict(hooks.counts)
