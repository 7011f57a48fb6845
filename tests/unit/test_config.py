"""The topology: seeded defaults, TOML files, and bad input named by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_dynamo.config import default_topology, load_topology
from chaos_dynamo.errors import ConfigError


def test_defaults_are_seeded_and_reproducible() -> None:
    a, b, c = default_topology(seed=7), default_topology(seed=7), default_topology(seed=8)
    assert a == b
    assert [lb.weight for lb in a.load_balancers] != [lb.weight for lb in c.load_balancers]


def test_default_topology_has_the_endpoint_and_its_variants() -> None:
    topo = load_topology()
    names = [e.name for e in topo.endpoints]
    assert names[0] == "dynamodb.us-east-1.amazonaws.com"
    assert "dynamodb-fips.us-east-1.amazonaws.com" in names
    dualstack = [e for e in topo.endpoints if e.ipv6]
    assert [e.name for e in dualstack] == ["dynamodb.us-east-1.api.aws"]
    assert len(topo.load_balancers) == 6
    assert {lb.az for lb in topo.load_balancers} == {"use1-az1", "use1-az2", "use1-az3"}
    assert all(lb.address.startswith("127.0.0.") for lb in topo.load_balancers)


def test_toml_file_describes_a_topology(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(
        """
[lab]
seed = 3
propagation_delay = 0.5

[[zones]]
name = "example.internal"

[[endpoints]]
name = "ddb.example.internal"

[[load_balancers]]
name = "a"
address = "127.0.0.21"
weight = 10

[[load_balancers]]
name = "b"
address = "127.0.0.22"
weight = 0
""",
        encoding="utf-8",
    )
    topo = load_topology(path, propagation_delay=None)
    assert topo.zones == ("example.internal",)
    assert topo.endpoints[0].zone == "example.internal"
    assert [(lb.name, lb.weight) for lb in topo.load_balancers] == [("a", 10), ("b", 0)]
    assert topo.propagation_delay == 0.5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[lab]\nhost = "10.0.0.1"\n', "lab.host"),
        ('[lab]\nhost = "0.0.0.0"\n', "lab.host"),
        ('[lab]\ndns_port = 70000\n', "lab.dns_port"),
        ('[lab]\npropagation_delay = -1\n', "lab.propagation_delay"),
        ('[lab]\npropagation_delay = "soon"\n', "lab.propagation_delay"),
        ('[lab]\nbackend = "ftp://x"\n', "lab.backend"),
        ('[lab]\nregion = "moon"\n', "lab.region"),
        ('[lab]\ncolour = "red"\n', "lab.colour"),
        ('[[load_balancers]]\nname = "a"\naddress = "127.0.0.21"\nweight = 256\n', "load_balancers[0].weight"),
        ('[[load_balancers]]\nname = "a"\naddress = "192.168.1.5"\n', "load_balancers[0].address"),
        ('[[load_balancers]]\nname = "a"\n', "load_balancers[0].address"),
        ('[[load_balancers]]\nname = "a"\naddress = "127.0.0.21"\n[[load_balancers]]\nname = "b"\naddress = "127.0.0.21"\n',
         "load_balancers[1].address"),
        ('[[endpoints]]\nname = "dynamodb.elsewhere.example"\nzone = "elsewhere.example"\n', "endpoints[0].zone"),
        ('[[endpoints]]\nname = "bad name!.us-east-1.amazonaws.com"\n', "endpoints[0].name"),
        ('zones = "x"\n', "zones"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert info.value.field == field, str(info.value)
    assert info.value.fix, "the error must say what to do"


def test_unparsable_and_missing_files() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_topology("/nonexistent/lab.toml")


def test_unparsable_toml(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[lab\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_topology(path)


def test_command_line_overrides_are_validated() -> None:
    assert load_topology(None, dns_port=5353).dns_port == 5353
    with pytest.raises(ConfigError) as info:
        load_topology(None, host="8.8.8.8")
    assert info.value.field == "lab.host"
    with pytest.raises(ConfigError) as info:
        load_topology(None, region="nowhere")
    assert info.value.field == "lab.region"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[[load_balancers]]\nname = 7\naddress = "127.0.0.21"\n', "load_balancers[0].name"),
        ('[[load_balancers]]\nname = "total"\naddress = "127.0.0.21"\n', "load_balancers[0].name"),
        ('[[load_balancers]]\nname = "a"\naddress = 2130706453\n', "load_balancers[0].address"),
        ('[lab]\nplan_table = 12345\n', "lab.plan_table"),
        ('[lab]\napi_port = 5300\ndns_port = 5300\n', "lab.dns_port"),
        ('[lab]\napi_port = 5300\nlb_port = 5300\n', "lab.lb_port"),
        ('[lab]\ndns_port = 5301\nlb_port = 5301\n', "lab.lb_port"),
        ('[lab]\nbackend = "https://127.0.0.1:4566"\n', "lab.backend"),
        ('[lab]\nbackend = "http://192.0.2.10:4566"\n', "lab.backend"),
        ('[lab]\nbackend = "http://moto.example.com:5000"\n', "lab.backend"),
        ('[[endpoints]]\nname = 5\n', "endpoints[0].name"),
    ],
)
def test_more_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert info.value.field == field, str(info.value)
    assert info.value.fix, "the error must say what to do"


def test_zero_ports_may_repeat_and_the_lb_port_is_free_otherwise() -> None:
    assert load_topology(None, api_port=0, dns_port=0, lb_port=0).lb_port == 0
    assert load_topology(None, api_port=5300, dns_port=5301, lb_port=8000).lb_port == 8000


def test_a_remote_backend_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        load_topology(None, backend="http://10.1.2.3:4566")
    assert info.value.field == "lab.backend"
    assert "remote backends are not supported yet" in str(info.value)
    for ok in ("http://127.0.0.1:4566", "http://localhost:5000/", "http://127.0.0.5:5000"):
        assert load_topology(None, backend=ok).backend == ok


def test_an_endpoint_outside_every_zone_says_so(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text('[[endpoints]]\nname = "dynamodb.elsewhere.example"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert info.value.field == "endpoints[0].zone"
    assert "inside none of the lab's zones" in str(info.value)
    assert "us-east-1.amazonaws.com" in str(info.value)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"seed": 3}, "--seed"), ({"region": "eu-west-1"}, "--region"),
    ({"seed": 3, "region": "eu-west-1"}, "--region/--seed"),
])
def test_seed_and_region_go_in_the_file_not_beside_it(tmp_path: Path, overrides: dict[str, object],
                                                      field: str) -> None:
    path = tmp_path / "lab.toml"
    path.write_text("[lab]\nseed = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(path, **overrides)
    assert info.value.field == field
    assert "[lab] table" in str(info.value)
    assert load_topology(path, seed=None, region=None).seed == 2


def test_region_and_seed_reshape_the_default_topology() -> None:
    topo = load_topology(None, region="eu-west-1", seed=4)
    assert topo.zones[0] == "eu-west-1.amazonaws.com"
    assert topo.endpoints[0].name == "dynamodb.eu-west-1.amazonaws.com"
    assert topo.load_balancers == default_topology(seed=4, region="eu-west-1").load_balancers
