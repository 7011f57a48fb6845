"""The static scan: which constructions it recognises, what it reads of their config, and the
static rules on the constructions a run did not exercise."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from chaos_dynamo.audit.static import mark_exercised, scan, scan_source, static_findings
from chaos_dynamo.errors import ConfigError

FORMS = '''
import boto3
import boto3 as b3
import botocore.session
from boto3 import client as make_client, resource
from boto3.session import Session
from botocore import session as core_session
from botocore.config import Config

a = boto3.client("dynamodb")
b = b3.resource("dynamodb", region_name="eu-west-1")
c = make_client("sqs")
d = resource("s3")
e = Session().client("sts")
f = boto3.session.Session(profile_name="x").resource("dynamodb")
g = botocore.session.get_session().create_client("route53")
h = core_session.get_session().create_client("iam", region_name="us-east-1")

class Repo:
    def __init__(self, session):
        self.table = session.client("dynamodb")
        self.other = self._session.resource(
            "dynamodb",
            endpoint_url="http://localhost:8000",
        )

not_aws = requests.client("x")
also_not = somebody.client("dynamodb")
'''


def test_every_construction_form_is_found_with_its_scope() -> None:
    found = scan_source(FORMS, "app.py")
    got = [(c.line, c.function, c.kind, c.service, c.region) for c in found]
    assert got == [
        (10, "<module>", "client", "dynamodb", None),
        (11, "<module>", "resource", "dynamodb", "eu-west-1"),
        (12, "<module>", "client", "sqs", None),
        (13, "<module>", "resource", "s3", None),
        (14, "<module>", "client", "sts", None),
        (15, "<module>", "resource", "dynamodb", None),
        (16, "<module>", "client", "route53", None),
        (17, "<module>", "client", "iam", "us-east-1"),
        (21, "Repo.__init__", "client", "dynamodb", None),
        (22, "Repo.__init__", "resource", "dynamodb", None),
    ]
    multi_line = found[-1]
    assert (multi_line.end_line, multi_line.endpoint_url, multi_line.config) == (25, "http://localhost:8000", "none")


def test_config_in_place_in_a_variable_and_unresolved() -> None:
    source = textwrap.dedent('''
        import os
        import boto3
        from botocore.client import Config as C

        SHORT = C(connect_timeout=2, read_timeout=5.5, retries={"mode": "standard", "max_attempts": 2})
        inline = boto3.client("dynamodb", config=C(retries={"mode": "legacy", "total_max_attempts": 8},
                                                    region_name="us-west-2"))
        named = boto3.client("dynamodb", config=SHORT)
        partly = boto3.client("dynamodb", config=C(connect_timeout=float(os.environ["T"]), **{"read_timeout": 1}))
        elsewhere = boto3.client("dynamodb", config=make_config())
        region = boto3.client("dynamodb", region_name=os.environ["REGION"])
    ''')
    inline, named, partly, elsewhere, region = scan_source(source, "app.py")
    assert (inline.config, inline.retry_mode, inline.max_attempts, inline.region) == ("inline", "legacy", 8, "us-west-2")
    assert (named.config, named.connect_timeout, named.read_timeout, named.retry_mode, named.max_attempts) == (
        "variable SHORT", 2.0, 5.5, "standard", 3)
    assert partly.config == "inline" and set(partly.unresolved) == {"connect_timeout", "**config"}
    assert elsewhere.config == "unresolved"
    assert region.region is None and region.unresolved == ("region_name",)


def rules_of(source: str) -> dict[tuple[str, str], str]:
    """(rule, function) -> severity of the static findings in ``source``."""
    found = static_findings(scan_source(textwrap.dedent(source), "app.py"))
    return {(f.rule, f.id.rsplit(":", 1)[1]): f.severity for f in found}


def test_static_rules_fire_on_the_fragile_construction_and_not_on_the_hardened_one() -> None:
    fragile = rules_of('''
        import boto3
        from botocore.config import Config
        def archive():
            return boto3.client("dynamodb", region_name="us-east-1",
                                config=Config(retries={"mode": "legacy", "max_attempts": 9}, read_timeout=3))
        def plain():
            return boto3.client("sqs")
    ''')
    assert fragile == {("static-timeouts-missing", "archive"): "medium",  # read_timeout=3 is fine
                       ("static-retry-legacy", "archive"): "medium",
                       ("static-retry-max-attempts", "archive"): "medium",
                       ("static-region-us-east-1", "archive"): "high",
                       ("static-timeouts-missing", "plain"): "high",  # no config at all
                       ("static-retry-unset", "plain"): "low"}
    hardened = rules_of('''
        import boto3
        from botocore.config import Config
        CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
        primary = boto3.client("dynamodb", region_name="us-east-1", config=CONFIG)
        fallback = boto3.client("dynamodb", region_name="us-west-2", config=CONFIG)
    ''')
    assert hardened == {}


def test_a_construction_the_scan_cannot_read_is_not_judged() -> None:
    assert rules_of('''
        import boto3
        client = boto3.client("dynamodb", config=settings.CONFIG)
    ''') == {}


def test_static_findings_group_by_function_and_list_every_line() -> None:
    source = textwrap.dedent('''
        import boto3
        def clients():
            return boto3.client("dynamodb"), boto3.client("dynamodb")
    ''')
    (timeouts, unset) = static_findings(scan_source(source, "pkg/app.py"))
    assert timeouts.id == "static-timeouts-missing:dynamodb:pkg/app.py:clients"
    assert timeouts.locations == ("pkg/app.py:4", "pkg/app.py:4") and unset.severity == "low"


def test_only_constructions_the_run_did_not_exercise_are_judged() -> None:
    found = scan_source(FORMS, "app.py")
    marked = mark_exercised(found, ["app.py:10", "app.py:24", "other.py:11"])
    assert [c.line for c in marked if c.exercised] == [10, 22]  # line 24 is inside the call on lines 22-25
    judged = {loc for f in static_findings(marked) for loc in f.locations}
    assert "app.py:10" not in judged and "app.py:22" not in judged and "app.py:11" in judged


def test_scan_walks_a_tree_skips_virtualenvs_and_reports_unparseable_files(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("import boto3\nboto3.client('dynamodb')\n")
    (tmp_path / "pkg" / "broken.py").write_text("def (:\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "boto3_user.py").write_text("import boto3\nboto3.client('s3')\n")
    found, skipped = scan([tmp_path], tmp_path)
    assert [(c.path, c.line, c.service) for c in found] == [("pkg/a.py", 2, "dynamodb")]
    assert len(skipped) == 1 and skipped[0].startswith("pkg/broken.py: SyntaxError")
    with pytest.raises(ConfigError, match="--static"):
        scan([tmp_path / "missing"], tmp_path)


def test_a_file_too_deeply_nested_to_parse_is_skipped_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "deep.py").write_text("x = a" + " + a" * 200_000 + "\n")
    (tmp_path / "ok.py").write_text("import boto3\nboto3.client('sqs')\n")
    found, skipped = scan([tmp_path], tmp_path)
    assert [c.path for c in found] == ["ok.py"]
    assert len(skipped) == 1 and skipped[0].startswith("deep.py: RecursionError")


def test_a_symlink_loop_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("import boto3\nboto3.client('dynamodb')\n")
    (tmp_path / "pkg" / "broken.py").write_text("def (:\n")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path / "pkg", target_is_directory=True)
    found, skipped = scan([tmp_path], tmp_path)
    assert [(c.path, c.line) for c in found] == [("pkg/a.py", 2)]
    assert len(skipped) == 1 and skipped[0].startswith("pkg/broken.py: SyntaxError")  # read once


def test_an_unreadable_directory_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """Run as an unprivileged user (root reads any directory): a forked child scans."""
    project = tmp_path / "proj"
    (project / "locked").mkdir(parents=True)
    (project / "locked" / "hidden.py").write_text("import boto3\nboto3.client('sqs')\n")
    (project / "a.py").write_text("import boto3\nboto3.client('dynamodb')\n")
    (project / "locked").chmod(0)
    for folder in (tmp_path, project):
        folder.chmod(0o755)
    found, skipped = _scan_as_nobody(tmp_path) if os.getuid() == 0 else _scan_summary(project, tmp_path)
    (project / "locked").chmod(0o755)
    assert found == ["proj/a.py"]
    assert len(skipped) == 1 and skipped[0].startswith("proj/locked: PermissionError"), skipped


def _scan_summary(path: Path, root: Path) -> tuple[list[str], list[str]]:
    found, skipped = scan([path], root)
    return [c.path for c in found], skipped


def _scan_as_nobody(root: Path) -> tuple[list[str], list[str]]:
    """:func:`_scan_summary` of ``root/proj`` in a child process running as ``nobody``, from
    ``root`` (so it needs no access to ``root``'s parents); its result as JSON."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.chdir(root)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(_scan_summary(Path("proj"), Path.cwd())).encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(write, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    assert data.startswith(b"["), data
    found, skipped = json.loads(data)
    return found, skipped
