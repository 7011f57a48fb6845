"""pytest plugin: resilience tests and Chaos Toolkit experiments beside a team's unit tests.

Installed with the package (entry point ``pytest11``), so any project with chaos-dynamo
installed can write::

    def test_my_service_survives(chaos_dynamo_lab, chaos_dynamo_resolver):
        client = boto3.client("dynamodb", endpoint_url=chaos_dynamo_lab.dynamodb_url(), ...)

Fixtures (one lab per test session, started on first use):

- ``chaos_dynamo_lab``: the session's lab, its :class:`~chaos_dynamo.lab.state.LabInfo`
  (seed from ``--chaos-dynamo-seed``);
- ``chaos_dynamo_resolver``: inside one test, the lab's names resolve through the lab DNS;
- ``chaos_dynamo_state_file``: the lab's state file, for ``chaos-dynamo`` commands and
  the ``chaos`` CLI run from a test;
- ``chaos_dynamo_env``: an environment (dict) for a subprocess that should reach the lab;
- ``chaos_dynamo_experiment``: runs one experiment file on the lab, returns its
  :class:`~chaos_dynamo.verify.core.Outcome` for custom asserts.

Experiment files become test items when a project opts in, so no unrelated JSON is ever
collected: the ini option ``chaos_dynamo_experiments`` (paths, directories or globs relative
to the rootdir) and ``--chaos-dynamo-experiments PATH`` (repeatable). Each file is one item
named after it, marked ``chaos_dynamo`` and ``experiment`` (its ``tags`` match ``-k``), and
runs with :func:`~chaos_dynamo.verify.core.verify_experiment` on the session's lab, one
after another: each experiment's rollbacks, and the runner's safety net behind them, leave
the lab healthy for the next, and an experiment that does not is a failed item. Journals go
to ``--chaos-dynamo-journals`` (default ``<basetemp>/journals`` with ``--basetemp``, else
``<rootdir>/journals``, where ``chaos-dynamo verify`` writes them too).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chaos_dynamo.errors import ChaosDynamoError, ConfigError
from chaos_dynamo.lab.state import LabInfo

if TYPE_CHECKING:
    from chaos_dynamo.runner import Interrupt
    from chaos_dynamo.verify.core import Outcome

INI_EXPERIMENTS = "chaos_dynamo_experiments"
MARKERS = {
    "chaos_dynamo": "runs on the chaos-dynamo lab (every collected experiment file)",
    "experiment": "a Chaos Toolkit experiment file collected as a test item",
}
_EXPERIMENTS = pytest.StashKey[frozenset[Path]]()
_RAN = pytest.StashKey[list[Path]]()

RunExperiment = Callable[..., "Outcome"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos-dynamo")
    group.addoption("--chaos-dynamo-seed", type=int, default=0,
                    help="seed of the lab started by the chaos_dynamo_lab fixture (default 0)")
    group.addoption("--chaos-dynamo-experiments", action="append", default=[], metavar="PATH",
                    help="collect this Chaos Toolkit experiment file as a test item; a directory "
                         "means every *.json in it, a glob every file it matches (repeatable)")
    group.addoption("--chaos-dynamo-journals", metavar="DIR", default=None,
                    help="where experiment items write their journals (default <basetemp>/journals "
                         "with --basetemp, else <rootdir>/journals)")
    parser.addini(INI_EXPERIMENTS, type="args", default=[],
                  help="experiment files, directories or globs (relative to the rootdir) collected "
                       "as test items")


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.stash[_RAN] = []
    from_ini = _expand(config.getini(INI_EXPERIMENTS), config.rootpath, "ini option " + INI_EXPERIMENTS,
                       config)
    from_cli = _expand(config.getoption("--chaos-dynamo-experiments"), config.invocation_params.dir,
                       "--chaos-dynamo-experiments", config)
    config.stash[_EXPERIMENTS] = frozenset(from_ini) | frozenset(from_cli)
    # Experiments outside the paths pytest collects are added to them: the command-line ones
    # always, the ini ones when pytest was not given paths (it collects testpaths or the
    # current directory), so `pytest tests/unit` still runs only what it names.
    wanted = from_cli + (from_ini if config.args_source != pytest.Config.ArgsSource.ARGS else [])
    covered = [_arg_path(arg, config.invocation_params.dir) for arg in config.args]
    for path in dict.fromkeys(wanted):
        if not any(path == c or c in path.parents for c in covered):
            config.args.append(str(path))


def _expand(entries: Iterable[str], base: Path, where: str, config: pytest.Config) -> list[Path]:
    """Experiment files named by ``entries``: files, directories (their ``*.json``, not
    recursive) or globs. As with ``chaos-dynamo verify``, a JSON file found through a
    directory or a glob that is not an experiment (no ``method``) is left out; a file named
    as such, or one that is not even JSON, is collected, so its error is reported."""
    found: list[Path] = []
    for entry in entries:
        literal = base / entry
        if literal.is_file():
            found.append(literal.resolve())
            continue
        matches = [Path(m) for m in sorted(glob.glob(str(literal), recursive=True))]
        files = [p for m in matches for p in (sorted(m.glob("*.json")) if m.is_dir() else [m])]
        if not files:
            message = (f"{where}: {entry!r} matches no file (relative to {base}); name an "
                       "experiment .json file, a directory of them or a glob")
            if where.startswith("--"):
                raise pytest.UsageError(message)
            config.issue_config_time_warning(pytest.PytestConfigWarning(message), stacklevel=2)
        found += [f.resolve() for f in files if f.is_file() and _may_be_experiment(f)]
    return found


def _may_be_experiment(path: Path) -> bool:
    """False for a JSON file that parses and is not a Chaos Toolkit experiment."""
    from chaos_dynamo.verify.experiments import is_experiment

    try:
        return is_experiment(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return True


def _arg_path(arg: str, invocation_dir: Path) -> Path:
    """The file or directory a pytest argument (maybe a node id) points at."""
    return (invocation_dir / arg.split("::", 1)[0]).resolve()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ExperimentFile | None:
    experiments = parent.config.stash.get(_EXPERIMENTS, frozenset())
    if experiments and file_path.resolve() in experiments:
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


class ExperimentFile(pytest.File):
    """An opted-in experiment file: checked at collection, one item named after the file."""

    def collect(self) -> Iterator[ExperimentItem]:
        """Check the file as ``chaos-dynamo verify`` does (JSON, the chaos-dynamo extension,
        what ``chaos validate`` checks) and yield its item; an invalid file is a collection
        error naming the file and the fix."""
        from chaos_dynamo.verify.experiments import inspect, load_experiment

        try:
            inspect(self.path)
            tags = load_experiment(self.path).get("tags") or []
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"{self.path}: ")
            raise self.CollectError(f"invalid experiment {self.nodeid}: {problem}") from None
        item = ExperimentItem.from_parent(self, name=self.path.stem,
                                          callobj=partial(_run_item, self.path))
        item.extra_keyword_matches.update(t for t in tags if isinstance(t, str))
        yield item


class ExperimentFailed(Exception):
    """An experiment item's outcome was not ``passed``."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.headline)
        self.outcome = outcome


def _run_item(path: Path, chaos_dynamo_experiment: RunExperiment) -> None:
    """The test an experiment item runs: verify it, fail with its verdict."""
    outcome = chaos_dynamo_experiment(path)
    if outcome.status != "passed":
        raise ExperimentFailed(outcome)


class ExperimentItem(pytest.Function):
    """One experiment run by ``verify_experiment`` on the session's lab."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for marker in MARKERS:
            self.add_marker(marker)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"experiment {self.path.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The verdict, not a traceback of the plugin: headline, then what failed."""
        if isinstance(excinfo.value, ExperimentFailed):
            return "\n".join(failure_lines(excinfo.value.outcome, verbose=self.config.get_verbosity() > 0))
        if isinstance(excinfo.value, ChaosDynamoError):
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo)


def failure_lines(outcome: Outcome, *, verbose: bool = False) -> list[str]:
    """A failed experiment for a person: the verdict headline, one line per failing probe or
    action (its value and tolerance, or what it raised), and where the journal is.
    ``verbose`` adds the whole verdict (every probe, action and rollback)."""
    lines = [f"{outcome.headline}  [{outcome.status}, expected to {outcome.expect}]"]
    lines += [f"  {failure.message}" for failure in outcome.failures]
    if verbose and outcome.lines:
        lines += ["verdict:"] + [f"  {line}" for line in outcome.lines]
    if outcome.journal is not None:
        lines.append(f"journal: {outcome.journal}")
    return lines


def journals_dir(config: pytest.Config) -> Path:
    """Where experiment items write their journals (see the module docstring)."""
    option = config.getoption("--chaos-dynamo-journals")
    if option:
        return (config.invocation_params.dir / str(option)).resolve()
    basetemp = config.getoption("basetemp")
    if basetemp:
        return (config.invocation_params.dir / str(basetemp) / "journals").resolve()
    return config.rootpath / "journals"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Where the journals are (those written to the session's journals directory)."""
    ran = config.stash.get(_RAN, [])
    if ran:
        terminalreporter.write_line(
            f"chaos-dynamo: {len(ran)} experiment journal(s) in {journals_dir(config)}; "
            "`chaos-dynamo report JOURNAL... -o report.html` draws them")


def stop_session_on_ctrl_c(outcome: Outcome, interrupt: Interrupt) -> None:
    """Raise KeyboardInterrupt when Ctrl-C (or SIGTERM, SIGHUP) reached verify during the
    run, which stopped chaos and restored the lab instead of pytest seeing it: stop the
    session as Ctrl-C would. Only then: an outcome chaos interrupted by itself is a failure."""
    if interrupt.requested.is_set():
        raise KeyboardInterrupt(outcome.headline)


@pytest.fixture(scope="session")
def chaos_dynamo_lab(request: pytest.FixtureRequest) -> Iterator[LabInfo]:
    """A lab (embedded moto, DNS, LB fleet) running for the whole test session."""
    from chaos_dynamo.config import load_topology
    from chaos_dynamo.lab.lab import Lab

    seed = request.config.getoption("--chaos-dynamo-seed")
    lab = Lab(load_topology(None, seed=seed))
    try:
        yield lab.start()
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def chaos_dynamo_state_file(chaos_dynamo_lab: LabInfo,
                            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session lab's state file: what ``chaos-dynamo`` commands and the experiments'
    activities read to find the lab. Services started on it are stopped at the end."""
    from chaos_dynamo.lab.state import remove_state, write_state
    from chaos_dynamo.services import supervisor

    path = tmp_path_factory.mktemp("chaos-dynamo") / "lab.json"
    write_state(chaos_dynamo_lab, path)
    try:
        yield path
    finally:
        supervisor.stop_all(path)
        remove_state(path)


@pytest.fixture
def chaos_dynamo_resolver(chaos_dynamo_lab: LabInfo) -> Iterator[LabInfo]:
    """Inside the test, the lab's names resolve through the lab DNS (``getaddrinfo`` shim)."""
    from chaos_dynamo.shim import lab_resolver

    with lab_resolver(chaos_dynamo_lab.dns, zones=list(chaos_dynamo_lab.zones)):
        yield chaos_dynamo_lab


@pytest.fixture
def chaos_dynamo_env(chaos_dynamo_lab: LabInfo, chaos_dynamo_state_file: Path) -> dict[str, str]:
    """The whole environment for a subprocess that should reach the lab:
    ``subprocess.run(cmd, env=chaos_dynamo_env)``.

    It is :meth:`LabInfo.process_env <chaos_dynamo.lab.state.LabInfo.process_env>` of this
    process's environment, as ``chaos-dynamo verify`` gives ``chaos``: no ``AWS_*`` variable
    of the caller's (no profile, key or endpoint of a real account leaks in), the shared
    AWS config files hidden, plus the lab's endpoints, test credentials, ``CHAOS_DYNAMO_DNS``
    (a Python subprocess resolves the lab's names through the lab DNS) and
    ``CHAOS_DYNAMO_STATE``. Other ``CHAOS_DYNAMO_*`` settings pass through (an experiment's
    ``CHAOS_DYNAMO_ENDPOINT``, or the call log of a ``chaos-dynamo audit`` running pytest).
    """
    return chaos_dynamo_lab.process_env(os.environ) | {"CHAOS_DYNAMO_STATE": str(chaos_dynamo_state_file)}


@pytest.fixture
def chaos_dynamo_experiment(request: pytest.FixtureRequest,
                            chaos_dynamo_state_file: Path) -> RunExperiment:
    """A function that runs one experiment on the session's lab and returns its Outcome.

    ``run(path, journal_dir=None)``: a relative ``path`` is relative to the rootdir; the
    journal, its log and the lab timeline go to ``journal_dir`` (default: the session's
    journals directory). It does not assert anything: check ``outcome.status``,
    ``outcome.failures`` or the journal yourself. Ctrl-C during the run stops chaos (the
    safety net restores the lab), then the session (KeyboardInterrupt); a run that chaos
    interrupted by itself (a control or safeguard) is a failed outcome, not Ctrl-C.
    """
    from chaos_dynamo.runner import Interrupt
    from chaos_dynamo.verify.core import verify_experiment

    config = request.config

    def run(path: str | Path, journal_dir: str | Path | None = None) -> Outcome:
        experiment = config.rootpath / path
        directory = Path(journal_dir) if journal_dir is not None else journals_dir(config)
        interrupt = Interrupt()
        outcome = verify_experiment(experiment, journal_dir=directory,
                                    state_file=str(chaos_dynamo_state_file), echo=print, interrupt=interrupt)
        stop_session_on_ctrl_c(outcome, interrupt)
        if outcome.journal is not None and journal_dir is None:
            config.stash[_RAN].append(outcome.journal)
        return outcome

    return run
