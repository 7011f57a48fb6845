"""`chaos-dynamo audit`'s edges: the command's environment, unwritable outputs, a crash, an
option mistyped before the command, and what the Markdown says when the scan found nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos_dynamo.audit import command
from chaos_dynamo.audit.command import EXIT_INFRA, EXIT_OK, EXIT_USAGE, Options, main
from chaos_dynamo.audit.observe import Observed
from chaos_dynamo.audit.render import to_markdown
from chaos_dynamo.audit.report import apply_gate, build_document
from chaos_dynamo.audit.run import AuditRun, _environment
from chaos_dynamo.cli import main as cli
from chaos_dynamo.lab.state import EndpointInfo, LabInfo

LEAKS = {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
         "AWS_PROFILE": "production", "AWS_SESSION_TOKEN": "real-token", "AWS_ACCESS_KEY_ID": "AKIAREAL",
         "AWS_CONFIG_FILE": "/home/me/.aws/config", "AWS_USE_FIPS_ENDPOINT": "true"}


def lab() -> LabInfo:
    zone = "us-east-1.amazonaws.com"
    return LabInfo(pid=1, api_url="http://127.0.0.1:4566", dns_host="127.0.0.1", dns_port=5353, lb_port=8000,
                   region="us-east-1", emulator_url="http://127.0.0.1:4566", embedded=True, seed=1,
                   plan_table="plans", record_ttl=5, propagation_delay=0.1, started_at=0.0, zones={zone: "Z1"},
                   endpoints=(EndpointInfo(f"dynamodb.{zone}", zone, "Z1", False),))


def test_the_command_gets_the_lab_and_none_of_the_users_aws_settings(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    for name, value in LEAKS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MY_APP_SETTING", "kept")
    env = _environment(AuditRun(("app",), "app"), lab(), tmp_path / "lab.json", tmp_path / "calls", "127.0.0.100")
    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    assert not {"AWS_ENDPOINT_URL_STS", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_PROFILE",
                "AWS_SESSION_TOKEN", "AWS_USE_FIPS_ENDPOINT"} & set(aws)
    assert aws["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566" and aws["AWS_ACCESS_KEY_ID"] == "testing"
    assert aws["AWS_CONFIG_FILE"] == aws["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"
    assert aws["AWS_SDK_UA_APP_ID"] == "app" and env["MY_APP_SETTING"] == "kept"
    assert env["CHAOS_DYNAMO_CALL_LOG"] == str(tmp_path / "calls")


def static_only(tmp_path: Path, *outputs: tuple[str, str]) -> Options:
    (tmp_path / "app.py").write_text("import boto3\nboto3.client('sqs', region_name='eu-west-1')\n")
    return Options(static=(tmp_path / "app.py",), outputs=outputs)


def test_an_output_that_is_a_directory_is_refused_before_anything_runs(tmp_path: Path) -> None:
    lines: list[str] = []
    assert main(static_only(tmp_path, ("json", str(tmp_path))), echo=lines.append) == EXIT_USAGE
    assert lines == [f"error: --json: {str(tmp_path)!r} is a directory; give a file path"]


def test_an_output_that_cannot_be_written_after_the_run_exits_3_and_the_others_are_written(tmp_path: Path) -> None:
    lines: list[str] = []
    options = static_only(tmp_path, ("json", "/proc/x.json"), ("markdown", str(tmp_path / "a.md")))
    assert main(options, echo=lines.append) == EXIT_INFRA
    assert "error: --json: cannot write '/proc/x.json': No such file or directory; give a writable path" in lines
    assert (tmp_path / "a.md").read_text().startswith("# Dependency audit")


def test_a_crash_is_not_mistaken_for_a_failed_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(command, "build_document", crash)
    lines: list[str] = []
    assert main(static_only(tmp_path), echo=lines.append, out=lines.append) == EXIT_INFRA
    assert lines[-1] == "error: the audit crashed (RuntimeError: boom): a bug in chaos-dynamo; please report it " \
                        "with the traceback above"
    assert any("Traceback (most recent call last)" in line for line in lines)


def test_an_option_mistyped_before_the_command_is_named() -> None:
    result = CliRunner().invoke(cli, ["audit", "--fail-onn", "high", "--", "true"])
    assert result.exit_code == EXIT_USAGE
    assert ("error: unknown option --fail-onn (options go before the command; use -- before a command that "
            "starts with -)") in result.output
    after_dashes = CliRunner().invoke(cli, ["audit", "--", "-no-such-program"])
    assert after_dashes.exit_code == EXIT_USAGE and "unknown option" not in after_dashes.output
    assert "'-no-such-program' is not on PATH" in after_dashes.output


def test_the_static_section_says_whether_the_scan_ran() -> None:
    scanned = to_markdown(apply_gate(build_document(None, Observed(), static_paths=("src", "lib")), None, None))
    assert "Scanned src, lib: no client construction found." in scanned and "--static not given" not in scanned
    not_run = to_markdown(apply_gate(build_document(None, Observed()), None, None))
    assert "Not run (--static not given)." in not_run


def test_a_static_scan_that_found_nothing_is_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    out: list[str] = []
    assert main(Options(static=(tmp_path,)), echo=lambda line: None, out=out.append) == EXIT_OK
    assert "no client construction found" in out[0] and "--static not given" not in out[0]
