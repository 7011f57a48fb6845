"""Stop conditions: guard probes checked throughout the method; when one fails, the run is
interrupted and rolled back.

A Chaos Toolkit control, declared once at the top of the experiment (as AWS FIS's stop
conditions and chaostoolkit-addons' safeguards, with the rollback FIS does and the addon
leaves to chaos's rollback strategy)::

    "controls": [{"name": "stop-conditions", "provider": {
        "type": "python", "module": "chaos_dynamo.safety.stop",
        "arguments": {"interval": 0.5, "probes": [
            {"type": "probe", "name": "checkout-healthy", "tolerance": true,
             "provider": {"type": "python", "module": "chaos_dynamo.health.probes",
                          "func": "http_health", "arguments": {"url": "http://127.0.0.1:8080/health"}}}
        ]}}}]

Arguments: ``probes`` (required; each exactly a steady-state probe: ``type`` ``probe``, a
unique ``name``, a ``tolerance``, a python, process or http ``provider``), ``interval``
(seconds between two rounds of checks, 0.05-3600, default 1) and ``rollbacks`` (default
true: roll back when a guard fires).

What happens, hook by hook (chaoslib calls them; see docs/stop-conditions.md):

- ``validate_control`` (``chaos validate``/``chaos run``, and ``chaos-dynamo verify``
  before any lab starts) and ``before_experiment_control`` (``chaos run --no-validation``)
  check the arguments: a ConfigError naming the field, and nothing runs.
- ``before_method_control`` checks every guard once (a guard already failing: the method
  does not start, there is nothing to roll back), then a thread checks them every
  ``interval`` seconds until ``after_method_control``.
- A guard fails when its value is outside its tolerance or the probe raises. The first
  failure is recorded and logged (CRITICAL) and the method is interrupted at once: the
  thread sends SIGUSR1 to chaos's main thread, chaoslib's own "exit gracefully" signal
  (:func:`chaoslib.exit.exit_gracefully`), which raises ``SystemExit`` in whatever the method
  is doing (a sleep, a subprocess, a socket), so an action's ``finally`` runs and chaos marks
  the run ``interrupted``. Without chaoslib's handler installed the next activity is refused
  instead (``InterruptExecution``).
- chaoslib 1.44 plays the rollbacks of an ``interrupted`` run only with the rollback
  strategy ``always``; ``after_experiment_control`` runs them (chaoslib's own rollback code,
  recorded in the journal's ``rollbacks``) when chaos did not, so they run exactly once
  whatever the strategy. It then records in the journal, under ``extensions``, an entry
  named ``stop-conditions``: which guard fired, when, its value and tolerance, and who ran
  the rollbacks (:func:`stopped_by` reads it back).

A guard that never fails changes nothing but adding that entry.
"""

# No `from __future__ import annotations`, as in every module chaoslib imports by name.
import inspect
import json
import logging
import signal
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError

__all__ = [
    "NAME", "Check", "Checker", "StopConditions", "after_experiment_control", "after_method_control",
    "after_activity_control", "before_activity_control", "before_experiment_control", "before_hypothesis_control",
    "before_method_control", "before_rollback_control", "check_guard", "cleanup_control",
    "configure_control", "parse", "stopped_by", "validate_control",
]

logger = logging.getLogger("chaostoolkit")

NAME = "stop-conditions"
"""The name of the journal's ``extensions`` entry this control writes."""
ARGUMENTS = ("probes", "interval", "rollbacks")
PROVIDER_TYPES = ("python", "process", "http")
DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.05
MAX_INTERVAL = 3600.0
STOP_JOIN_TIMEOUT = 5.0
"""Seconds ``after_method_control`` waits for a check in progress before moving on."""
RESIGNAL_INTERVAL = 1.0
"""Seconds after which the interrupt is sent again while the activity it was sent to runs on."""
RESIGNAL_LIMIT = 30
"""How many times at most the interrupt is sent again."""

_clock: Clock = REAL_CLOCK
"""What the checks' timestamps are read from; tests replace it (``monkeypatch``)."""


# --- the arguments ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StopConditions:
    """The control's arguments, checked.

    Attributes:
        probes: the guard probes, as declared (chaoslib runs them).
        interval: seconds between two rounds of checks.
        rollbacks: roll back when a guard fires.
    """

    probes: tuple[dict[str, Any], ...]
    interval: float = DEFAULT_INTERVAL
    rollbacks: bool = True

    @property
    def names(self) -> list[str]:
        return [str(p["name"]) for p in self.probes]


def parse(arguments: Mapping[str, Any], where: str = f"controls[{NAME}]") -> StopConditions:
    """The control's provider ``arguments`` checked; ConfigError naming the field.

    Each probe is checked as chaoslib checks a steady-state probe (its provider's module and
    function, its process path, its URL; its tolerance), plus what a guard needs: a unique
    name, and nothing a guard cannot honour (``ref``, ``background``, ``pauses``).
    """
    if not isinstance(arguments, Mapping):
        raise ConfigError(f"{where}.provider.arguments", f"{arguments!r} is not an object",
                          "give {\"probes\": [...], \"interval\": seconds}")
    unknown = sorted(set(arguments) - set(ARGUMENTS))
    if unknown:
        raise ConfigError(f"{where}.provider.arguments", f"unknown key(s) {unknown}", f"use only {list(ARGUMENTS)}")
    probes = arguments.get("probes")
    if not isinstance(probes, list) or not probes:
        raise ConfigError(f"{where}.probes", f"{probes!r} is not a list of probes",
                          "list at least one guard probe, declared as a steady-state probe with a tolerance")
    interval = arguments.get("interval", DEFAULT_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise ConfigError(f"{where}.interval", f"{interval!r} is not a number of seconds",
                          f"use a number from {MIN_INTERVAL} to {MAX_INTERVAL:g}")
    rollbacks = arguments.get("rollbacks", True)
    if not isinstance(rollbacks, bool):
        raise ConfigError(f"{where}.rollbacks", f"{rollbacks!r} is not true/false", "use true or false")
    seen: set[str] = set()
    for i, probe in enumerate(probes):
        _check_probe(probe, f"{where}.probes[{i}]", seen)
    return StopConditions(tuple(dict(p) for p in probes), float(interval), rollbacks)


def _check_probe(probe: object, where: str, seen: set[str]) -> None:
    from chaoslib.activity import ensure_activity_is_valid
    from chaoslib.exceptions import ChaosException
    from chaoslib.hypothesis import ensure_hypothesis_tolerance_is_valid

    if not isinstance(probe, dict):
        raise ConfigError(where, f"{probe!r} is not a probe", "declare it as a steady-state probe")
    if "ref" in probe:
        raise ConfigError(f"{where}.ref", "a guard cannot refer to another activity",
                          "declare the probe in full here")
    if probe.get("type") != "probe":
        raise ConfigError(f"{where}.type", f"{probe.get('type')!r} is not \"probe\"",
                          "a guard only observes: make it a probe")
    name = probe.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name", f"{name!r} is not a name", "name the guard; the verdict says which fired")
    if name in seen:
        raise ConfigError(f"{where}.name", f"{name!r} names another guard too", "give each guard its own name")
    seen.add(name)
    for key in ("background", "pauses"):
        if key in probe:
            raise ConfigError(f"{where}.{key}", "a guard runs in a thread of its own, every `interval` seconds",
                              f"remove {key!r}")
    provider = probe.get("provider")
    if not isinstance(provider, dict):
        raise ConfigError(f"{where}.provider", f"{provider!r} is not a provider", "give a python, process or http "
                                                                                    "provider")
    if provider.get("type") not in PROVIDER_TYPES:
        raise ConfigError(f"{where}.provider.type", f"{provider.get('type')!r} is not a provider type",
                          f"use one of {list(PROVIDER_TYPES)}")
    if "tolerance" not in probe:
        raise ConfigError(f"{where}.tolerance", "is missing", "say what the guard's value must be, as for a "
                                                               "steady-state probe (e.g. true, 200, a range)")
    try:
        ensure_hypothesis_tolerance_is_valid(probe["tolerance"])
    except ChaosException as exc:
        raise ConfigError(f"{where}.tolerance", f"{probe['tolerance']!r}: {exc}",
                          "use a tolerance as in a steady-state probe") from None
    try:
        ensure_activity_is_valid(probe)
    except ChaosException as exc:
        raise ConfigError(f"{where}.provider", str(exc), "fix the probe's provider") from None


# --- one check, and the checker loop ------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One evaluation of one guard.

    Attributes:
        name: the guard's name.
        tolerance: its tolerance, as declared.
        value: the probe's output (None when it raised).
        met: within tolerance (False when the probe raised).
        error: what the probe raised ("" when it answered).
        at: wall clock, seconds since the epoch, when the check ended.
    """

    name: str
    tolerance: Any
    value: Any
    met: bool
    error: str = ""
    at: float = 0.0

    def describe(self) -> str:
        """``value V, tolerance T`` (or ``raised E, tolerance T``), values as JSON."""
        what = f"raised {self.error}" if self.error else f"value {_json(self.value)}"
        return f"{what}, tolerance {_json(self.tolerance)}"


def check_guard(probe: Mapping[str, Any], configuration: Mapping[str, Any] | None = None,
                secrets: Mapping[str, Any] | None = None, clock: Clock | None = None) -> Check:
    """Run one guard probe with chaoslib's own provider code and check its value with
    chaoslib's own tolerance code, as the steady-state hypothesis does. A probe (or a
    tolerance probe) that raises is a failed check, never an exception."""
    from chaoslib import substitute
    from chaoslib.activity import run_activity
    from chaoslib.hypothesis import within_tolerance

    clock = clock or _clock
    name = str(probe.get("name", "?"))
    tolerance = probe.get("tolerance")
    config = dict(configuration or {})
    secret = dict(secrets or {})
    try:
        value = run_activity(dict(probe), config, secret)
    except Exception as exc:  # noqa: BLE001 - a guard that cannot answer has failed
        return Check(name, tolerance, None, False, _exception_text(exc), clock.now())
    try:
        wanted = substitute(tolerance, config, secret) if isinstance(tolerance, str) else tolerance
        met = bool(within_tolerance(wanted, value, configuration=config, secrets=secret))
    except Exception as exc:  # noqa: BLE001 - a tolerance probe that raises fails the check
        return Check(name, tolerance, value, False, f"its tolerance raised {_exception_text(exc)}", clock.now())
    return Check(name, tolerance, value, met, "", clock.now())


class Checker:
    """Checks every guard, round after round, until one fails or :meth:`stop` is called.

    Pure of chaoslib and signals: ``check`` evaluates one guard, ``on_fail`` is called
    once, with the first failed check, under the lock :meth:`stop` takes (so once ``stop``
    has returned, ``on_fail`` will not be called), and ``wait(seconds)`` pauses between
    rounds and returns True when stopped (``threading.Event.wait`` unless given).
    """

    def __init__(self, probes: Sequence[Mapping[str, Any]], interval: float,
                 check: Callable[[Mapping[str, Any]], Check], on_fail: Callable[[Check], None],
                 wait: Callable[[float], bool] | None = None) -> None:
        self.probes = list(probes)
        self.interval = interval
        self._check = check
        self._on_fail = on_fail
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.checks = 0
        self.fired: Check | None = None

    def round(self) -> Check | None:
        """Check every guard once; the first failed check (``on_fail`` called), else None.
        Nothing fires once stopped: the method ended first."""
        for probe in self.probes:
            if self._stop.is_set():
                return None
            try:
                result = self._check(probe)
            except Exception as exc:  # noqa: BLE001 - a guard that cannot be checked has failed
                result = Check(str(probe.get("name", "?")), probe.get("tolerance"), None, False,
                               f"{type(exc).__name__}: {exc}")
            self.checks += 1
            if not result.met:
                with self._lock:
                    if self._stopped or self.fired is not None:
                        return None
                    self.fired = result
                    self._on_fail(result)
                return result
        self.rounds += 1
        return None

    def run(self) -> Check | None:
        """Rounds every ``interval`` seconds (the first after one interval) until a guard
        fails (returned) or the checker is stopped (None)."""
        while not self._wait(self.interval):
            if self._stop.is_set():
                return None
            fired = self.round()
            if fired is not None or self._stop.is_set():
                return fired
        return None

    def start(self) -> None:
        """:meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="chaos-dynamo-stop-conditions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT) -> None:
        """No guard fires after this returns; waits up to ``timeout`` s for a check in progress."""
        with self._lock:
            self._stopped = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


# --- interrupting chaos ---------------------------------------------------------------------------

def interrupt_main_thread() -> bool:
    """Send chaoslib's "exit gracefully" signal (SIGUSR1) to the main thread, where chaos runs
    the method: chaoslib's handler raises ``SystemExit(20)`` there, which ends a sleep, a
    subprocess wait or a socket call at once. False (nothing sent) when chaoslib's handler is
    not installed (chaoslib installs it for the length of a run): another handler may not
    interrupt anything, and the signal's default action would kill the process, rollbacks
    and all."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or getattr(signal.getsignal(usr1), "__module__", "") != "chaoslib.exit":
        return False
    ident = threading.main_thread().ident
    if ident is None:
        return False
    signal.pthread_kill(ident, usr1)
    return True


_interrupt: Callable[[], bool] = interrupt_main_thread
"""How a fired guard interrupts the method; tests replace it (``monkeypatch``)."""


@dataclass
class _Run:
    """The control's state for one experiment run (chaos runs one per process)."""

    config: StopConditions | None = None
    checker: Checker | None = None
    fired: Check | None = None
    fired_during: str = ""  # "method" | "before the method"
    method_started_at: float | None = None
    in_method: bool = False
    signalled: bool = False
    chaos_rolled_back: bool = False
    rolling_back: bool = False
    rollbacks: str = ""
    event_registry: Any = None
    rounds: int = 0
    checks: int = 0
    activities_started: int = 0  # of the method, by before/after_activity_control
    activities_ended: int = 0

    def fire(self, check: Check) -> None:
        """A guard failed: record it; during the method, say it and interrupt the method."""
        self.fired = check
        if not self.in_method:
            self.fired_during = "before the method"
            return
        self.fired_during = "method"
        logger.critical("stop condition %s fired: %s; interrupting the run and rolling back",
                        check.name, check.describe())
        self.signalled = _interrupt()
        if not self.signalled:
            logger.warning("stop conditions: chaoslib's exit signal handler is not installed; the method "
                           "stops before its next activity")
        elif self.activities_ended < self.activities_started:
            threading.Thread(target=self.keep_interrupting, args=(self.activities_started,),
                             name="chaos-dynamo-stop-resignal", daemon=True).start()

    def keep_interrupting(self, activity: int, wait: Callable[[float], bool] | None = None) -> int:
        """Send the interrupt again while the method's activity number ``activity`` runs on.

        Python drops an exception a signal handler raises while the main thread is inside a
        garbage-collection callback ("Exception ignored in ..."), so chaoslib's SystemExit can
        be lost and a long hold would go on. Once that activity has ended (chaoslib calls
        ``after_activity_control`` in a ``finally``) or the method is over, nothing more is
        sent; a later activity is refused by ``before_activity_control``. Returns how many
        times it sent the interrupt again.
        """
        pause = wait or threading.Event().wait
        sent = 0
        while sent < RESIGNAL_LIMIT:
            pause(RESIGNAL_INTERVAL)
            if not self.in_method or self.activities_ended >= activity:
                break
            logger.warning("stop conditions: the method's activity is still running; interrupting it again")
            _interrupt()
            sent += 1
        return sent


_current: _Run | None = None


def _run_state() -> _Run:
    global _current
    if _current is None:
        _current = _Run()
    return _current


def _config(run: _Run, arguments: Mapping[str, Any]) -> StopConditions:
    """The arguments checked once per run; InterruptExecution naming the field if they are bad
    (chaoslib ignores any other exception a control raises)."""
    if run.config is None:
        try:
            run.config = parse(arguments)
        except ConfigError as exc:
            raise InterruptExecution(f"stop conditions: {exc}") from None
    return run.config


# --- the control's hooks (chaoslib calls them by name) -----------------------------------------

def validate_control(control: dict[str, Any]) -> None:
    """``chaos validate``/``chaos run``: InvalidControl naming the field when the arguments or
    the control's declaration would keep the guards from working."""
    name = control.get("name", NAME)
    where = f"controls[{name}]"
    try:
        if "scope" in control:
            raise ConfigError(f"{where}.scope", f"{control['scope']!r}: the guards need both the before and "
                                                "after hooks", "remove scope")
        if control.get("automatic", True) is not True:
            raise ConfigError(f"{where}.automatic", "the guards must see the method start and end",
                              "remove automatic (declare the control at the top of the experiment)")
        parse((control.get("provider") or {}).get("arguments") or {}, where)
    except ConfigError as exc:
        raise InvalidControl(str(exc)) from None


def configure_control(experiment: dict[str, Any] | None = None, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                      event_registry: Any = None, **arguments: Any) -> None:
    """A fresh state for this run; keeps chaos's event registry for the rollbacks it may run."""
    global _current
    _current = _Run(event_registry=event_registry)


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Check the arguments (``chaos run --no-validation`` skipped validate_control)."""
    config = _config(_run_state(), arguments)
    logger.info("stop conditions: %s checked every %g s during the method", ", ".join(config.names),
                config.interval)


def before_hypothesis_control(context: dict[str, Any], **arguments: Any) -> None:
    """The hypothesis after the method is not checked when a guard fired in the method
    without interrupting it (no signal handler, and it was the last activity)."""
    run = _run_state()
    run.in_method = False
    if run.fired is not None and run.fired_during == "method" and not run.signalled:
        raise InterruptExecution(f"stop condition {run.fired.name} fired: {run.fired.describe()}")


def before_method_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Check every guard once, then keep checking them in a thread until the method ends.

    Raises:
        InterruptExecution: a guard fails already; the method does not start.
    """
    run = _run_state()
    config = _config(run, arguments)

    def check(probe: Mapping[str, Any]) -> Check:
        return check_guard(probe, configuration, secrets)

    checker = run.checker = Checker(config.probes, config.interval, check, run.fire)
    first = checker.round()  # not yet in the method: recorded, nothing to interrupt
    if first is not None:
        raise InterruptExecution(f"stop condition {first.name} fired before the method: {first.describe()}; "
                                 "the method does not start")
    run.method_started_at = _clock.now()
    run.in_method = True
    checker.start()


def after_method_control(context: dict[str, Any], **arguments: Any) -> None:
    """The method ended (or was interrupted): stop checking; no guard fires after this."""
    run = _run_state()
    _stop_checker(run)  # first: a guard firing meanwhile still counts as during the method
    run.in_method = False


def before_activity_control(context: dict[str, Any], **arguments: Any) -> None:
    """Once a guard fired, the method's next activity is refused (without chaoslib's signal
    handler, or when its interrupt was lost and the activity it hit ended by itself)."""
    run = _run_state()
    if not run.in_method:
        return
    if run.fired is not None:
        raise InterruptExecution(f"stop condition {run.fired.name} fired: {run.fired.describe()}")
    run.activities_started += 1


def after_activity_control(context: dict[str, Any], **arguments: Any) -> None:
    """A method activity ended (chaoslib calls this in a ``finally``, interrupted or not)."""
    run = _run_state()
    if run.in_method:
        run.activities_ended += 1


def before_rollback_control(context: dict[str, Any], **arguments: Any) -> None:
    """Chaos plays the rollbacks itself (its strategy said so): the control will not."""
    run = _run_state()
    run.in_method = False
    if not run.rolling_back:
        run.chaos_rolled_back = True


def after_experiment_control(context: dict[str, Any], state: Any = None,
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **arguments: Any) -> None:
    """Roll back if a guard fired during the method and chaos did not; record what happened
    in the journal (``state``)."""
    run = _run_state()
    _stop_checker(run)
    run.in_method = False
    if run.config is None:
        return  # bad arguments: the run was refused before anything happened
    journal = state if isinstance(state, dict) else None
    if run.fired is not None and run.fired_during == "method":
        if run.chaos_rolled_back:
            run.rollbacks = "run by chaos (its rollback strategy plays them on an interrupted run)"
        elif not run.config.rollbacks:
            run.rollbacks = "not run (the control's rollbacks argument is false)"
        else:
            run.rollbacks = _roll_back(run, context, configuration, secrets, journal)
    elif run.fired is not None:
        run.rollbacks = "not run (the method did not start)"
    if journal is not None:
        extensions = journal.get("extensions")
        if not isinstance(extensions, list):
            extensions = journal["extensions"] = []
        extensions.append(_record(run))


def cleanup_control() -> None:
    """The run is over: stop checking, forget this run."""
    global _current
    if _current is not None:
        _stop_checker(_current)
    _current = None


# --- internals ------------------------------------------------------------------------------

def _stop_checker(run: _Run) -> None:
    checker, run.checker = run.checker, None
    if checker is not None:
        checker.stop()
        run.rounds += checker.rounds
        run.checks += checker.checks


def _roll_back(run: _Run, experiment: dict[str, Any], configuration: dict[str, Any] | None,
               secrets: dict[str, Any] | None, journal: dict[str, Any] | None) -> str:
    """Play the experiment's rollbacks with chaoslib's own code, once, recorded in the
    journal's ``rollbacks`` as chaos records its own. A second Ctrl-C during them stops
    them, as it stops chaos's."""
    from chaoslib.run import apply_rollbacks, get_background_pools

    runs: list[Any] = []
    if journal is not None:
        existing = journal.get("rollbacks")
        runs = existing if isinstance(existing, list) else []
        journal["rollbacks"] = runs
    _, pool = get_background_pools(experiment)
    registry = run.event_registry
    run.rolling_back = True
    logger.info("stop conditions: rolling back, as chaos does not on an interrupted run")
    try:
        if registry is not None:
            registry.start_rollbacks(experiment)
        # chaoslib 1.44 fills ``runs`` as it goes; older ones return the list.
        accepts = inspect.signature(apply_rollbacks).parameters
        extra = {k: v for k, v in (("event_registry", registry), ("runs", runs)) if k in accepts}
        returned = apply_rollbacks(experiment, configuration, secrets, pool, experiment.get("dry"), **extra)
        if "runs" not in accepts and isinstance(returned, list):
            runs.extend(returned)
        outcome = "run by the stop-conditions control"
    except (InterruptExecution, KeyboardInterrupt, SystemExit) as exc:
        logger.warning("stop conditions: the rollbacks were interrupted (%s); the rest did not run",
                       type(exc).__name__)
        outcome = "interrupted while the stop-conditions control ran them"
    finally:
        run.rolling_back = False
        if registry is not None:
            registry.rollbacks_completed(experiment, journal)
    return outcome


def _record(run: _Run) -> dict[str, Any]:
    """The journal's ``extensions`` entry (the format :func:`stopped_by` reads)."""
    config = run.config
    stopped = None
    if run.fired is not None:
        c = run.fired
        stopped = {"name": c.name, "value": c.value, "tolerance": c.tolerance, "error": c.error,
                   "reason": "raised" if c.error else "tolerance not met",
                   "at": datetime.fromtimestamp(c.at, UTC).isoformat(),
                   "during": run.fired_during,
                   "seconds_into_method": (None if run.method_started_at is None
                                           else round(c.at - run.method_started_at, 3)),
                   "rollbacks": run.rollbacks}
    return {"name": NAME, "guards": config.names if config else [],
            "interval": config.interval if config else None,
            "rounds": run.rounds, "checks": run.checks, "stopped": stopped}


def stopped_by(journal: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stop condition that fired in the run of ``journal`` (the ``stopped`` object of
    its ``stop-conditions`` entry: ``name``, ``value``, ``tolerance``, ``error``, ``reason``,
    ``at``, ``during``, ``seconds_into_method``, ``rollbacks``), or None."""
    entry = guard_record(journal)
    stopped = entry.get("stopped") if entry else None
    return dict(stopped) if isinstance(stopped, dict) else None


def guard_record(journal: Mapping[str, Any]) -> dict[str, Any] | None:
    """The journal's ``stop-conditions`` entry (None when the run had no stop conditions)."""
    extensions = journal.get("extensions")
    if not isinstance(extensions, list):
        return None
    for entry in extensions:
        if isinstance(entry, dict) and entry.get("name") == NAME:
            return dict(entry)
    return None


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().removeprefix(
        "chaoslib.exceptions.ActivityFailed: ")


def _json(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:196] + " ..."
