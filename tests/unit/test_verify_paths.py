"""What verify accepts: paths expanded, every experiment checked before anything runs, and
bad input refused with exit 2 (nothing started, no journal written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chaos_dynamo.cli import main
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.verify.experiments import expand, inspect

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "experiments"


def experiment(**extension: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": "1.0.0", "title": "quick", "description": "d",
        "method": [{"type": "probe", "name": "look", "provider": {
            "type": "python", "module": "chaos_dynamo.endpoint.probes", "func": "endpoint_answer",
            "arguments": {}}}],
    }
    if extension:
        data["extensions"] = [{"name": "chaos-dynamo", **extension}]
    return data


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_directory_is_its_experiments_sorted_and_not_recursive(tmp_path: Path) -> None:
    write(tmp_path / "b.json", experiment())
    write(tmp_path / "a.json", experiment(expect="deviate", deviates=["x"]))
    write(tmp_path / "settings.json", {"not": "an experiment"})
    write(tmp_path / "notes.txt", "hello")
    write(tmp_path / "nested" / "c.json", experiment())
    notes: list[str] = []
    specs = expand([tmp_path], notes.append)
    assert [s.stem for s in specs] == ["a", "b"]
    assert [s.expect for s in specs] == ["deviate", "hold"]
    assert notes == [f"skipped {tmp_path / 'settings.json'}: not a Chaos Toolkit experiment (no \"method\")"]


def test_a_broken_json_file_in_a_directory_is_bad_input_not_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a.json", experiment())
    write(tmp_path / "broken.json", '{"method": [')
    with pytest.raises(ConfigError) as info:
        expand([tmp_path], print)
    assert info.value.field.endswith("broken.json") and "not valid JSON" in info.value.problem


def test_a_file_named_explicitly_must_be_an_experiment(tmp_path: Path) -> None:
    path = write(tmp_path / "settings.json", {"not": "an experiment"})
    with pytest.raises(ConfigError, match="is not a Chaos Toolkit experiment"):
        expand([path], print)


@pytest.mark.parametrize("name", ["missing.json", "missing-dir"])
def test_a_path_that_does_not_exist_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        expand([tmp_path / name], print)


def test_a_directory_without_experiments_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "settings.json", {"x": 1})
    with pytest.raises(ConfigError, match="holds no Chaos Toolkit experiment"):
        expand([tmp_path], print)


def test_the_same_file_twice_runs_once_but_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path / "one" / "smoke.json", experiment())
    assert len(expand([a, tmp_path / "one", a], print)) == 1
    write(tmp_path / "two" / "smoke.json", experiment())
    with pytest.raises(ConfigError, match="journals .smoke.json. would collide"):
        expand([tmp_path / "one", tmp_path / "two"], print)


@pytest.mark.parametrize(("extension", "field"), [
    ({"expect": "explode"}, "expect"),
    ({"deviates": "endpoint-resolves"}, "deviates"),
    ({"deviates": []}, "deviates"),
    ({"namespaces": "endpoint"}, "namespaces"),
    ({"namespaces": []}, "namespaces"),
    ({"namespaces": ["ok", 3]}, "namespaces"),
    ({"namespaces": ["  "]}, "namespaces"),
    ({"expects": "deviate"}, "extensions[chaos-dynamo]"),
])
def test_a_bad_extension_names_the_file_and_the_field(tmp_path: Path, extension: dict[str, Any],
                                                      field: str) -> None:
    path = write(tmp_path / "bad.json", experiment(**extension))
    with pytest.raises(ConfigError) as info:
        inspect(path)
    assert info.value.field.startswith(str(path)) and info.value.field.endswith(field)


def test_two_chaos_dynamo_extensions_are_refused(tmp_path: Path) -> None:
    data = experiment(expect="hold")
    data["extensions"].append({"name": "chaos-dynamo", "expect": "deviate"})
    with pytest.raises(ConfigError, match="more than once"):
        inspect(write(tmp_path / "twice.json", data))


def test_what_chaos_would_refuse_is_refused_before_any_lab_starts(tmp_path: Path) -> None:
    data = experiment()
    data["method"][0]["provider"]["func"] = "no_such_probe"
    with pytest.raises(ConfigError, match=r"method\[0\]\.provider\.func: .*no_such_probe"):
        inspect(write(tmp_path / "typo.json", data))
    with pytest.raises(ConfigError, match="chaos would refuse it: experiment requires a title"):
        inspect(write(tmp_path / "untitled.json", experiment() | {"title": ""}))


def test_namespaces_are_read_and_undeclared_is_none(tmp_path: Path) -> None:
    declared = inspect(write(tmp_path / "a.json", experiment(namespaces=["endpoint", " leases "])))
    assert declared.namespaces == frozenset({"endpoint", "leases"})
    assert inspect(write(tmp_path / "b.json", experiment())).namespaces is None


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_the_sample_experiments_are_valid(path: Path) -> None:
    spec = inspect(path)
    assert spec.namespaces and spec.title


# --- the command: exit 2 and nothing ran ----------------------------------------------------

def verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAOS_DYNAMO_STATE", raising=False)
    result = CliRunner().invoke(main, ["verify", *args])
    return result.exit_code, result.output


def test_one_bad_experiment_stops_everything_before_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "exps" / "a-good.json", experiment())
    write(tmp_path / "exps" / "z-bad.json", experiment(expect="sometimes"))
    code, output = verify(tmp_path, monkeypatch, "exps", "--junit", "out/junit.xml")
    assert code == 2, output
    assert "error: " in output and "z-bad.json: extensions[chaos-dynamo].expect: 'sometimes' is not known" in output
    assert not (tmp_path / "journals").exists() and not (tmp_path / "out").exists()


def test_without_paths_experiments_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "experiments" / "bad.json", '{"method": ')
    code, output = verify(tmp_path, monkeypatch)
    assert code == 2 and "experiments/bad.json" in output, output


def test_without_paths_or_experiments_it_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = verify(tmp_path, monkeypatch)
    assert code == 2 and "no experiments/ directory here" in output, output


def test_jobs_must_be_positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.json", experiment())
    code, output = verify(tmp_path, monkeypatch, "a.json", "--jobs", "0")
    assert code == 2 and "--jobs" in output


def test_a_state_file_naming_no_lab_is_an_infrastructure_error(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.json", experiment())
    code, output = verify(tmp_path, monkeypatch, "a.json", "--state-file", "nowhere/lab.json")
    assert code == 3 and "no lab is running" in output, output
    assert not (tmp_path / "journals").exists()
