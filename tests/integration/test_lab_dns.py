"""The lab DNS over real UDP and TCP sockets on 127.0.0.1, checked with dnspython, our
client and (when installed) dig."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.dns import wire
from chaos_dynamo.dns.client import DnsTimeout, query
from chaos_dynamo.dns.server import LabDNS
from chaos_dynamo.errors import LabError
from chaos_dynamo.route53.records import AliasTarget, RecordSet, ZoneSnapshot

pytestmark = pytest.mark.integration

ZONE = "example.com."
SOA = "ns-2048.awsdns-64.net. hostmaster.amazon.com. 1 7200 900 1209600 86400"
BIG_TXT = " ".join('"' + f"{i:02d}" + "x" * 198 + '"' for i in range(12))  # ~2.4 kB


def base_records() -> list[RecordSet]:
    return [
        RecordSet(ZONE, "SOA", 900, (SOA,)),
        RecordSet(ZONE, "NS", 172800, ("ns-1.awsdns-01.org.",)),
        RecordSet("www.example.com", "A", 60, ("192.0.2.1", "192.0.2.2")),
        RecordSet("www.example.com", "AAAA", 60, ("2001:db8::1",)),
        RecordSet("lock.example.com", "TXT", 0, ('"holder=enactor-a" "expires=1700000300"',)),
        RecordSet("big.example.com", "TXT", 30, (BIG_TXT,)),
        RecordSet("web.example.com", "CNAME", 120, ("www.example.com",)),
        RecordSet("out.example.com", "CNAME", 120, ("elsewhere.example.net",)),
        RecordSet("loop1.example.com", "CNAME", 10, ("loop2.example.com",)),
        RecordSet("loop2.example.com", "CNAME", 10, ("loop1.example.com",)),
        RecordSet("deep.a.b.example.com", "A", 60, ("192.0.2.9",)),
        # The DynamoDB shape: endpoint alias -> plan name -> weighted records.
        RecordSet("ddb.example.com", "A", alias=AliasTarget("Z1", "plan-7.example.com")),
        *[
            RecordSet("plan-7.example.com", "A", 5, (f"10.7.0.{i}",), set_identifier=f"lb{i}",
                      weight=w)
            for i, w in ((1, 3), (2, 1), (3, 0))
        ],
        RecordSet("dangling.example.com", "A", alias=AliasTarget("Z1", "gone.example.com")),
        RecordSet("zeros.example.com", "A", 5, ("10.9.0.1",), set_identifier="a", weight=0),
        RecordSet("zeros.example.com", "A", 5, ("10.9.0.2",), set_identifier="b", weight=0),
        RecordSet("fo.example.com", "A", 5, ("10.8.0.2",), set_identifier="s", failover="SECONDARY"),
        RecordSet("fo.example.com", "A", 5, ("10.8.0.1",), set_identifier="p", failover="PRIMARY"),
        *[
            RecordSet("mv.example.com", "A", 5, (f"10.6.0.{i}",), set_identifier=f"m{i}",
                      multivalue_answer=True)
            for i in range(10)
        ],
    ]


def snapshot(records: list[RecordSet], serial: int = 1) -> ZoneSnapshot:
    return ZoneSnapshot("/hostedzone/Z1", ZONE, tuple(records), serial=serial)


@pytest.fixture
def lab() -> Iterator[LabDNS]:
    server = LabDNS(seed=1234).start()
    server.publish(snapshot(base_records()))
    try:
        yield server
    finally:
        server.stop()


def ask(lab: LabDNS, name: str, qtype: str = "A", *, tcp: bool = False,
        edns: bool = False) -> dns.message.Message:
    """Ask with dnspython, an independent client."""
    message = dns.message.make_query(name, qtype, use_edns=0 if edns else False)
    host, port = lab.address
    if tcp:
        return dns.query.tcp(message, host, port=port, timeout=2)
    return dns.query.udp(message, host, port=port, timeout=2, ignore_trailing=False)


def rows(message: dns.message.Message) -> list[tuple[str, str, int, str]]:
    return [
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl,
         rdata.to_text())
        for rrset in message.answer
        for rdata in rrset
    ]


def raw_exchange(address: tuple[str, int], data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(address)
        sock.send(data)
        return sock.recv(65535)


# --- positive answers -----------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_aaaa_txt_with_dnspython(lab: LabDNS, tcp: bool) -> None:
    a = ask(lab, "www.example.com", "A", tcp=tcp)
    assert a.rcode() == dns.rcode.NOERROR
    assert a.flags & dns.flags.AA and not a.flags & dns.flags.RA
    assert sorted(rows(a)) == [("www.example.com.", "A", 60, "192.0.2.1"),
                               ("www.example.com.", "A", 60, "192.0.2.2")]
    assert rows(ask(lab, "www.example.com", "AAAA", tcp=tcp)) == [
        ("www.example.com.", "AAAA", 60, "2001:db8::1")]
    assert rows(ask(lab, "lock.example.com", "TXT", tcp=tcp)) == [
        ("lock.example.com.", "TXT", 0, '"holder=enactor-a" "expires=1700000300"')]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_aaaa_txt_with_our_client(lab: LabDNS, tcp: bool) -> None:
    answer = query(lab.address, "www.example.com", "A", tcp=tcp)
    assert answer.rcode == "NOERROR" and answer.transport == ("tcp" if tcp else "udp")
    assert answer.addresses == ("192.0.2.1", "192.0.2.2")
    assert query(lab.address, "WWW.example.com", "AAAA", tcp=tcp).addresses == ("2001:db8::1",)
    assert query(lab.address, "lock.example.com", "TXT", tcp=tcp).answers == (
        ("lock.example.com.", "TXT", 0, '"holder=enactor-a" "expires=1700000300"'),)


def test_cname_is_followed_inside_the_lab(lab: LabDNS) -> None:
    expected = [("web.example.com.", "CNAME", 120, "www.example.com."),
                ("www.example.com.", "A", 60, "192.0.2.1"),
                ("www.example.com.", "A", 60, "192.0.2.2")]
    assert rows(ask(lab, "web.example.com")) == expected
    assert list(query(lab.address, "web.example.com").answers) == expected
    only_cname = query(lab.address, "web.example.com", "CNAME")
    assert only_cname.answers == (("web.example.com.", "CNAME", 120, "www.example.com."),)


def test_cname_out_of_the_lab_and_loops_stop(lab: LabDNS) -> None:
    out = query(lab.address, "out.example.com")
    assert out.rcode == "NOERROR"
    assert out.answers == (("out.example.com.", "CNAME", 120, "elsewhere.example.net."),)
    looped = query(lab.address, "loop1.example.com")
    assert [a[1] for a in looped.answers] == ["CNAME", "CNAME"]


def test_cname_chain_depth_is_limited(lab: LabDNS) -> None:
    chain = [RecordSet(f"c{i}.example.com", "CNAME", 10, (f"c{i + 1}.example.com",))
             for i in range(20)]
    lab.publish(snapshot(base_records() + chain, serial=2))
    answer = query(lab.address, "c0.example.com")
    assert answer.rcode == "NOERROR"
    assert 1 < len(answer.answers) <= 9


def test_alias_answers_target_records_owned_by_qname(lab: LabDNS) -> None:
    answer = query(lab.address, "ddb.example.com")
    assert answer.rcode == "NOERROR"
    assert len(answer.answers) == 1
    name, rtype, ttl, value = answer.answers[0]
    assert (name, rtype, ttl) == ("ddb.example.com.", "A", 5)  # no CNAME, target's TTL
    assert value in {"10.7.0.1", "10.7.0.2"}


def test_alias_to_a_name_without_records_is_empty_noerror(lab: LabDNS) -> None:
    answer = ask(lab, "dangling.example.com")
    assert answer.rcode() == dns.rcode.NOERROR and answer.answer == []


def test_alias_across_zones_follows_alias_chains(lab: LabDNS) -> None:
    lab.publish(ZoneSnapshot("Z2", "elb.example.net", (
        RecordSet("lb-1.elb.example.net", "A", 60, ("10.1.1.1",)),
        RecordSet("front.elb.example.net", "A", alias=AliasTarget("Z2", "lb-1.elb.example.net")),
    )))
    lab.publish(snapshot(base_records() + [
        RecordSet("api.example.com", "A", alias=AliasTarget("Z2", "front.elb.example.net")),
    ], serial=2))
    assert query(lab.address, "api.example.com").answers == (
        ("api.example.com.", "A", 60, "10.1.1.1"),)


def test_failover_answers_primary_and_multivalue_at_most_eight(lab: LabDNS) -> None:
    assert query(lab.address, "fo.example.com").addresses == ("10.8.0.1",)
    assert len(query(lab.address, "mv.example.com").addresses) == 8


# --- negative answers -----------------------------------------------------------------


def test_removed_records_give_nodata_with_soa(lab: LabDNS) -> None:
    """The us-east-1 answer: the endpoint name still exists, its records are gone."""
    without = [r for r in base_records() if r.name != "www.example.com."]
    lab.publish(snapshot(without, serial=2))
    for message in (ask(lab, "www.example.com"), ask(lab, "www.example.com", tcp=True)):
        assert message.rcode() == dns.rcode.NOERROR
        assert message.answer == []
        assert message.authority[0].rdtype == dns.rdatatype.SOA
        assert message.authority[0].ttl == 900
    assert query(lab.address, "www.example.com") == query(lab.address, "www.example.com")
    assert query(lab.address, "www.example.com").answers == ()
    # Still NOERROR after a further publish: the name's history is kept per zone.
    lab.publish(snapshot(without, serial=3))
    assert query(lab.address, "www.example.com").rcode == "NOERROR"


def test_other_type_and_empty_non_terminal_give_nodata(lab: LabDNS) -> None:
    assert ask(lab, "www.example.com", "MX").rcode() == dns.rcode.NOERROR
    ent = ask(lab, "a.b.example.com")
    assert ent.rcode() == dns.rcode.NOERROR and ent.answer == []
    assert ent.authority[0].rdtype == dns.rdatatype.SOA


def test_never_existing_name_is_nxdomain_with_soa(lab: LabDNS) -> None:
    message = ask(lab, "never.example.com")
    assert message.rcode() == dns.rcode.NXDOMAIN
    assert message.flags & dns.flags.AA
    assert message.authority[0].to_text() == f"example.com. 900 IN SOA {SOA}"
    assert query(lab.address, "x.www.example.com").rcode == "NXDOMAIN"


def test_names_outside_every_zone_are_refused(lab: LabDNS) -> None:
    message = ask(lab, "www.example.org")
    assert message.rcode() == dns.rcode.REFUSED
    assert not message.flags & dns.flags.AA
    assert query(lab.address, "com").rcode == "REFUSED"


def test_longest_zone_wins_and_remove_zone_falls_back(lab: LabDNS) -> None:
    lab.publish(ZoneSnapshot("Z9", "sub.example.com", (
        RecordSet("host.sub.example.com", "A", 60, ("10.99.0.1",)),)))
    assert query(lab.address, "host.sub.example.com").addresses == ("10.99.0.1",)
    assert {z.zone_id for z in lab.zones()} == {"Z1", "Z9"}
    lab.remove_zone("/hostedzone/Z9")
    assert query(lab.address, "host.sub.example.com").rcode == "NXDOMAIN"
    lab.remove_zone("Z1")
    assert query(lab.address, "www.example.com").rcode == "REFUSED"
    assert lab.zones() == []


def test_opcode_class_and_garbage_handling(lab: LabDNS) -> None:
    data = bytearray(wire.build_query(5, "www.example.com"))
    data[2] |= 0x10  # opcode 2 (STATUS)
    assert wire.parse_response(raw_exchange(lab.address, bytes(data))).rcode == "NOTIMP"
    chaos = wire.build_query(6, "version.bind", "TXT")[:-2] + b"\x00\x03"
    assert wire.parse_response(raw_exchange(lab.address, chaos)).rcode == "REFUSED"
    garbage = wire.HEADER.pack(7, 0, 1, 0, 0, 0) + b"\x05ab"
    formerr = wire.parse_response(raw_exchange(lab.address, garbage))
    assert (formerr.id, formerr.rcode) == (7, "FORMERR")
    axfr = ask(lab, "example.com", "AXFR", tcp=True)
    assert axfr.rcode() == dns.rcode.REFUSED
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x01\x02", lab.address)  # no header: dropped silently
        sock.sendto(raw_exchange(lab.address, wire.build_query(8, "www.example.com")), lab.address)
    assert query(lab.address, "www.example.com").rcode == "NOERROR"  # served after the junk
    assert lab.counters()["dropped"] == 2  # the short one and the echoed response


# --- weighted answers -----------------------------------------------------------------


def weighted_sample(lab: LabDNS, count: int) -> list[str]:
    return [query(lab.address, "ddb.example.com").addresses[0] for _ in range(count)]


def test_weighted_frequencies_follow_weights_and_replay_by_seed(lab: LabDNS) -> None:
    n = 2000
    picks = weighted_sample(lab, n)
    counts = Counter(picks)
    assert "10.7.0.3" not in counts  # weight 0 never answers
    # Weights 3:1 -> p = 0.75. The seed is fixed, so the count is deterministic; the
    # bound (6 binomial standard deviations) is what a correct sampler always meets.
    sigma = math.sqrt(n * 0.75 * 0.25)
    assert abs(counts["10.7.0.1"] - 0.75 * n) <= 6 * sigma
    assert counts["10.7.0.1"] + counts["10.7.0.2"] == n
    with LabDNS(seed=1234) as replay:
        replay.publish(snapshot(base_records()))
        assert weighted_sample(replay, 200) == picks[:200]


def test_all_zero_weights_share_equally(lab: LabDNS) -> None:
    counts = Counter(query(lab.address, "zeros.example.com").addresses[0] for _ in range(400))
    assert set(counts) == {"10.9.0.1", "10.9.0.2"}
    assert abs(counts["10.9.0.1"] - 200) <= 6 * math.sqrt(400 * 0.25)


# --- size, truncation, EDNS ------------------------------------------------------------


def test_large_txt_truncates_over_udp_and_is_whole_over_tcp(lab: LabDNS) -> None:
    udp = ask(lab, "big.example.com", "TXT")
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = ask(lab, "big.example.com", "TXT", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert rows(tcp) == [("big.example.com.", "TXT", 30, BIG_TXT)]
    ours = query(lab.address, "big.example.com", "TXT")
    assert ours.transport == "tcp" and ours.answers == (("big.example.com.", "TXT", 30, BIG_TXT),)


def test_edns_size_allows_a_larger_udp_answer_and_opt_is_echoed(lab: LabDNS) -> None:
    message = dns.message.make_query("big.example.com", "TXT", use_edns=0, payload=4096)
    host, port = lab.address
    answer = dns.query.udp(message, host, port=port, timeout=2)
    assert not answer.flags & dns.flags.TC and len(answer.answer) == 1
    assert answer.edns == 0 and answer.payload == 1232
    plain = ask(lab, "www.example.com")
    assert plain.edns == -1  # no OPT asked, none sent


def test_id_is_patched_and_0x20_case_is_preserved(lab: LabDNS) -> None:
    for qid, name in ((0x1234, "wWw.ExAmPlE.cOm"), (0xBEEF, "WWW.EXAMPLE.COM"), (1, "www.example.com")):
        sent = wire.build_query(qid, name, "A", rd=True)
        reply = raw_exchange(lab.address, sent)
        assert reply[:2] == qid.to_bytes(2, "big")
        assert reply[12:len(sent)] == sent[12:]  # question byte for byte
        flags = int.from_bytes(reply[2:4], "big")
        assert flags & wire.RD and flags & wire.AA and not flags & wire.RA
        parsed = dns.message.from_wire(reply)
        assert parsed.answer[0].name.to_text() == name + "."


# --- publish atomicity ----------------------------------------------------------------


def test_publish_is_atomic_under_concurrent_queries(lab: LabDNS) -> None:
    gen_a = {"192.0.2.1", "192.0.2.2"}
    gen_b = {"198.51.100.1", "198.51.100.2", "198.51.100.3"}

    def records(values: set[str], tag: str) -> list[RecordSet]:
        return [r for r in base_records() if r.name not in ("www.example.com.", "lock.example.com.")] + [
            RecordSet("www.example.com", "A", 60, tuple(sorted(values))),
            RecordSet("lock.example.com", "TXT", 0, (f'"{tag}"',)),
        ]

    snapshots = [snapshot(records(gen_a, "a"), 10), snapshot(records(gen_b, "b"), 11)]
    done = threading.Event()

    def publisher() -> None:
        i = 0
        while not done.is_set():
            lab.publish(snapshots[i % 2])
            i += 1

    thread = threading.Thread(target=publisher)
    thread.start()
    seen: list[frozenset[str]] = []
    try:
        for _ in range(3000):
            answer = query(lab.address, "www.example.com", timeout=2)
            seen.append(frozenset(answer.addresses))
            if {frozenset(gen_a), frozenset(gen_b)} <= set(seen) and len(seen) >= 300:
                break
    finally:
        done.set()
        thread.join()
    assert set(seen) <= {frozenset(gen_a), frozenset(gen_b)}
    assert set(seen) == {frozenset(gen_a), frozenset(gen_b)}


# --- query log and counters -----------------------------------------------------------


def test_query_log_and_counters_match_what_was_sent() -> None:
    clock = FakeClock(start=1000.0)
    with LabDNS(seed=1, clock=clock, log_limit=4) as lab:
        lab.publish(snapshot(base_records()))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect(lab.address)
            sock.send(wire.build_query(1, "WWW.example.com", "A"))
            sock.recv(4096)
            assert lab.query_log()[0].client_port == sock.getsockname()[1]
        clock.advance(10)
        query(lab.address, "www.example.com", "AAAA")
        query(lab.address, "never.example.com", "A", tcp=True)
        clock.advance(10)
        query(lab.address, "www.example.org", "TXT")
        query(lab.address, "www.example.com", "A")

        log = lab.query_log()
        assert len(log) == 4  # log_limit trims the log, not the counters
        assert [(r.name, r.qtype, r.rcode, r.answers, r.transport) for r in log] == [
            ("www.example.com.", "AAAA", "NOERROR", 1, "udp"),
            ("never.example.com.", "A", "NXDOMAIN", 0, "tcp"),
            ("www.example.org.", "TXT", "REFUSED", 0, "udp"),
            ("www.example.com.", "A", "NOERROR", 2, "udp"),
        ]
        assert [r.time for r in log] == [1010.0, 1010.0, 1020.0, 1020.0]
        assert {r.client for r in log} == {"127.0.0.1"}
        assert [r.name for r in lab.query_log(since=1015.0)] == ["www.example.org.", "www.example.com."]
        assert len(lab.query_log(name="WWW.Example.com")) == 2
        assert lab.query_log(client="127.0.0.2") == []
        assert lab.counters() == {
            "total": 5,
            "by_rcode": {"NOERROR": 3, "NXDOMAIN": 1, "REFUSED": 1},
            "by_qtype": {"A": 3, "AAAA": 1, "TXT": 1},
            "by_client": {"127.0.0.1": 5},
            "by_name": {"www.example.com.": 3, "never.example.com.": 1, "www.example.org.": 1},
            "by_transport": {"udp": 4, "tcp": 1},
            "dropped": 0,
            "errors": 0,
        }


# --- lifecycle ------------------------------------------------------------------------


def test_stop_leaves_nothing_listening() -> None:
    server = LabDNS().start()
    server.publish(snapshot(base_records()))
    host, port = server.address
    assert query((host, port), "www.example.com", tcp=True).rcode == "NOERROR"
    assert query((host, port), "www.example.com").rcode == "NOERROR"
    server.stop()
    server.stop()  # idempotent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        # SO_REUSEADDR still fails while anything listens; it only skips TIME_WAIT.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        tcp.listen(1)
    with pytest.raises(LabError):
        _ = server.address


def test_restart_on_the_same_port_and_on_another_loopback_address() -> None:
    with LabDNS("127.0.0.1") as first:
        port = first.address[1]
    with LabDNS("127.0.0.1", port) as again:
        again.publish(snapshot(base_records()))
        assert query(again.address, "www.example.com").rcode == "NOERROR"
    with LabDNS("127.0.0.2") as other:
        other.publish(snapshot(base_records()))
        assert other.address[0] == "127.0.0.2"
        assert query(other.address, "www.example.com").rcode == "NOERROR"


def test_open_tcp_connection_does_not_block_stop() -> None:
    server = LabDNS().start()
    idle = socket.create_connection(server.address, timeout=2)
    try:
        assert query(server.address, "www.example.com", tcp=True).rcode == "REFUSED"
        server.stop()
        assert idle.recv(10) == b""  # the server closed it
    finally:
        idle.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::1", "localhost", "192.168.1.1"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="host"):
        LabDNS(host)


def test_start_twice_is_an_error(lab: LabDNS) -> None:
    with pytest.raises(LabError, match="already running"):
        lab.start()


# --- our client against misbehaving servers ----------------------------------------------


def test_client_ignores_stray_datagrams() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        fake.settimeout(5)

        def serve() -> None:
            data, addr = fake.recvfrom(4096)
            q = wire.parse_query(data)
            good = wire.HEADER.pack(q.id, wire.QR | wire.AA, 1, 1, 0, 0) + q.question
            good += wire.POINTER_TO_QNAME + wire.RR_FIXED.pack(1, 1, 60, 4) + bytes([10, 0, 0, 9])
            wrong_id = wire.HEADER.pack(q.id ^ 1, wire.QR, 1, 0, 0, 0) + q.question
            other_q = wire.build_query(q.id, "evil.example.com")
            wrong_question = wire.HEADER.pack(q.id, wire.QR, 1, 0, 0, 0) + other_q[12:]
            for reply in (wrong_id, wrong_question, b"\x00", good):
                fake.sendto(reply, addr)

        thread = threading.Thread(target=serve)
        thread.start()
        answer = query(fake.getsockname(), "www.example.com", timeout=3, retries=0)
        thread.join()
    assert answer.answers == (("www.example.com.", "A", 60, "10.0.0.9"),)


def test_client_times_out_when_nobody_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(DnsTimeout, match="2 attempt"):
            query(silent.getsockname(), "www.example.com", timeout=0.2, retries=1)
    assert issubclass(DnsTimeout, TimeoutError)


# --- dig --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed (apt-get install dnsutils)")
def test_dig_parses_answers(lab: LabDNS) -> None:
    host, port = lab.address

    def dig(*args: str) -> str:
        result = subprocess.run(
            ["dig", f"@{host}", "-p", str(port), "+tries=1", "+time=2", *args],
            capture_output=True, text=True, timeout=20, check=True,
        )
        return result.stdout

    out = dig("www.example.com", "A")
    assert "status: NOERROR" in out and "flags: qr aa" in out
    assert "192.0.2.1" in out and "192.0.2.2" in out
    assert dig("+short", "web.example.com").split() == ["www.example.com.", "192.0.2.1", "192.0.2.2"]
    assert "status: NXDOMAIN" in dig("never.example.com")
    big = dig("+ignore", "+noedns", "big.example.com", "TXT")
    assert "flags: qr aa tc" in big
    fallback = dig("+noedns", "big.example.com", "TXT")
    assert "Truncated, retrying in TCP mode" in fallback and "11xxxx" in fallback


def test_unusable_soa_is_replaced_so_negative_answers_still_work(lab: LabDNS) -> None:
    broken = [r for r in base_records() if r.type != "SOA"] + [
        RecordSet(ZONE, "SOA", 900, ("{'Value': 'ns. host. 1 7200 900 1209600 86400'}",))]
    lab.publish(snapshot(broken, serial=2))
    message = ask(lab, "never.example.com")
    assert message.rcode() == dns.rcode.NXDOMAIN
    assert message.authority[0].rdtype == dns.rdatatype.SOA
    assert query(lab.address, "example.com", "SOA").rcode == "NOERROR"


def test_bad_record_value_is_servfail_not_a_crash(lab: LabDNS) -> None:
    lab.publish(snapshot(base_records() + [RecordSet("bad.example.com", "A", 60, ("not-an-ip",))], 2))
    assert query(lab.address, "bad.example.com").rcode == "SERVFAIL"
    assert query(lab.address, "www.example.com").rcode == "NOERROR"
    assert lab.counters()["errors"] == 0
