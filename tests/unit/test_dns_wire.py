"""Pure encode/decode tests for chaos_dynamo.dns.wire, cross-checked with dnslib and dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import dnslib
import pytest

from chaos_dynamo.dns import wire

# --- helpers ------------------------------------------------------------------------


def answer_message(
    qname: str, records: list[tuple[str, str, int, str]], *, qid: int = 0x4242,
    rcode: int = 0, authority: list[tuple[str, str, int, str]] | None = None,
    question_name: str | None = None, qtype: str = "A",
) -> bytes:
    """A full response built the way the server builds it: header, question, records."""
    question = wire.encode_name(question_name or qname) + wire.type_code(qtype).to_bytes(2, "big")
    question += b"\x00\x01"
    writer = wire.RecordWriter(qname, 12 + len(question))
    authority = authority or []
    for owner, rtype, ttl, value in records + authority:
        writer.add(owner, wire.type_code(rtype), ttl, value)
    header = wire.HEADER.pack(qid, wire.QR | wire.AA | rcode, 1, len(records), len(authority), 0)
    return header + question + writer.getvalue()


def dnspython_answers(message: bytes) -> list[tuple[str, str, int, str]]:
    parsed = dns.message.from_wire(message)
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rdata.to_text())
        for rrset in parsed.answer
        for rdata in rrset
    ]


# --- names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["www.example.com", "www.example.com.", "WWW.Example.COM."])
def test_encode_name_matches_dnspython(name: str) -> None:
    assert wire.encode_name(name) == dns.name.from_text(name).to_wire()


def test_root_name_round_trips() -> None:
    assert wire.encode_name(".") == b"\x00"
    assert wire.name_to_text(b"\x00") == "."
    assert wire.decode_name(b"\x00", 0) == (".", 1)


def test_octal_escape_in_name_is_route53_style() -> None:
    # Route 53 writes a wildcard label as \052 (octal 52 = '*').
    assert wire.encode_name("\\052.example.com") == b"\x01*\x07example\x03com\x00"


def test_name_text_escapes_dots_and_unprintables() -> None:
    raw = b"\x03a.b\x02\x00z\x00"
    assert wire.name_to_text(raw) == "a\\.b.\\000z."
    assert wire.encode_name("a\\.b.\\000z.") == raw


@pytest.mark.parametrize("bad", ["a" * 64 + ".com", ".".join(["abcdefgh"] * 32), "a..b", "é.com"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(wire.WireError):
        wire.encode_name(bad)


def test_decode_name_follows_backward_pointers_only() -> None:
    data = b"\x00" * 12 + b"\x03www\x07example\x03com\x00" + b"\x03api\xc0\x10"
    assert wire.decode_name(data, 12) == ("www.example.com.", 29)
    assert wire.decode_name(data, 29) == ("api.example.com.", 35)
    looping = b"\x00" * 12 + b"\xc0\x0c"
    with pytest.raises(wire.WireError):
        wire.decode_name(looping, 12)
    forward = b"\x00" * 12 + b"\xc0\x0e\x00"
    with pytest.raises(wire.WireError):
        wire.decode_name(forward, 12)


# --- queries ------------------------------------------------------------------------


def test_parse_query_from_dnspython_keeps_question_bytes_and_edns() -> None:
    message = dns.message.make_query("WwW.ExAmPlE.cOm", "AAAA", use_edns=0, payload=4096)
    message.id = 0xBEEF
    data = message.to_wire()
    query = wire.parse_query(data)
    assert query.id == 0xBEEF
    assert query.question == data[12:12 + len(query.question)]
    assert query.qname_wire == b"\x03WwW\x07ExAmPlE\x03cOm\x00"
    assert query.qname == "www.example.com."
    assert query.key == query.question.lower()
    assert (query.qtype, query.qclass) == (28, 1)
    assert query.edns is True and query.udp_size == 4096
    assert query.flags & wire.RD and query.opcode == 0


def test_parse_query_from_dnslib_without_edns() -> None:
    data = dnslib.DNSRecord.question("api.example.com", "TXT").pack()
    query = wire.parse_query(data)
    assert query.qname == "api.example.com."
    assert query.qtype == 16
    assert query.edns is False and query.udp_size == 512


def test_small_edns_size_is_raised_to_512() -> None:
    data = wire.build_query(1, "a.example.com", "A", edns_size=100)
    assert wire.parse_query(data).udp_size == 512


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x00\x00",  # shorter than a header
        wire.HEADER.pack(1, 0, 0, 0, 0, 0),  # no question
        wire.HEADER.pack(1, 0, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2,  # two questions
        wire.HEADER.pack(1, 0, 1, 0, 0, 0) + b"\x03www\x07exam",  # name cut short
        wire.HEADER.pack(1, 0, 1, 0, 0, 0) + b"\x03www\x00\x00",  # type/class cut short
        wire.HEADER.pack(1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer in question
        wire.HEADER.pack(1, 0, 1, 0, 0, 1) + b"\x00\x00\x01\x00\x01" + b"\x00\x00\x29",  # bad OPT
    ],
)
def test_parse_query_rejects_malformed(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_query(data)


def test_build_query_parses_in_dnslib_and_dnspython() -> None:
    data = wire.build_query(0x1234, "www.example.com", "AAAA", rd=True, edns_size=1232)
    record = dnslib.DNSRecord.parse(data)
    assert record.header.id == 0x1234 and record.header.rd == 1
    assert str(record.q.qname) == "www.example.com." and record.q.qtype == dnslib.QTYPE.AAAA
    message = dns.message.from_wire(data)
    assert message.question[0].name.to_text() == "www.example.com."
    assert message.edns == 0 and message.payload == 1232


# --- records ------------------------------------------------------------------------


ALL_TYPES = [
    ("www.example.com.", "A", 60, "192.0.2.1"),
    ("www.example.com.", "AAAA", 60, "2001:db8::1"),
    ("www.example.com.", "CNAME", 300, "target.example.net."),
    ("www.example.com.", "NS", 172800, "ns-1.awsdns-01.org."),
    ("www.example.com.", "MX", 300, "10 mail.example.com."),
    ("www.example.com.", "TXT", 300, '"v=spf1 -all" "second string"'),
    ("www.example.com.", "SRV", 300, "1 5 443 svc.example.com."),
    ("www.example.com.", "SOA", 900,
     "ns-2048.awsdns-64.net. hostmaster.amazon.com. 1 7200 900 1209600 86400"),
]


@pytest.mark.parametrize("record", ALL_TYPES, ids=[r[1] for r in ALL_TYPES])
def test_each_type_decodes_identically_in_dnspython_and_wire(record: tuple[str, str, int, str]) -> None:
    message = answer_message("www.example.com.", [record], qtype=record[1])
    assert dnspython_answers(message) == [record]
    assert wire.parse_response(message).answers == [record]


def test_answers_parse_in_dnslib() -> None:
    message = answer_message("www.example.com.", ALL_TYPES)
    parsed = dnslib.DNSRecord.parse(message)
    assert [str(rr.rname) for rr in parsed.rr] == ["www.example.com."] * len(ALL_TYPES)
    assert str(parsed.rr[0].rdata) == "192.0.2.1"
    assert parsed.rr[5].rdata.data == [b"v=spf1 -all", b"second string"]


def test_answer_owner_is_a_pointer_to_the_question() -> None:
    message = answer_message("www.example.com.", [("www.example.com.", "A", 60, "192.0.2.1")])
    question_end = 12 + len(wire.encode_name("www.example.com")) + 4
    assert message[question_end:question_end + 2] == wire.POINTER_TO_QNAME


def test_pointer_carries_the_senders_case() -> None:
    message = answer_message(
        "www.example.com.", [("www.example.com.", "A", 60, "192.0.2.1")],
        question_name="WwW.eXample.COM",
    )
    parsed = dns.message.from_wire(message)
    assert parsed.answer[0].name.to_text() == "WwW.eXample.COM."


def test_chain_names_are_compressed_and_decode() -> None:
    records = [
        ("a.example.com.", "CNAME", 60, "b.example.com."),
        ("b.example.com.", "A", 60, "192.0.2.7"),
    ]
    message = answer_message("a.example.com.", records)
    plain = len(wire.encode_name("b.example.com"))
    assert len(message) < 12 + 19 + 4 + (2 + 10 + plain) + (plain + 10 + 4)
    assert dnspython_answers(message) == records
    assert [(str(rr.rname), str(rr.rdata)) for rr in dnslib.DNSRecord.parse(message).rr] == [
        ("a.example.com.", "b.example.com."), ("b.example.com.", "192.0.2.7"),
    ]


def test_authority_soa_parses() -> None:
    soa = ("example.com.", "SOA", 900, "ns.example.com. hostmaster.example.com. 3 7200 900 1209600 86400")
    message = answer_message("nx.example.com.", [], rcode=3, authority=[soa])
    parsed = dns.message.from_wire(message)
    assert parsed.rcode() == dns.rcode.NXDOMAIN
    assert parsed.authority[0].to_text() == (
        "example.com. 900 IN SOA ns.example.com. hostmaster.example.com. 3 7200 900 1209600 86400"
    )
    response = wire.parse_response(message)
    assert response.rcode == "NXDOMAIN" and response.authority == [soa]


@pytest.mark.parametrize("bad", [("A", "300.1.1.1"), ("AAAA", "1.2.3.4"), ("MX", "mail.example.com"),
                                 ("SOA", "a. b. 1 2 3"), ("CAA", '0 issue "amazon.com"')])
def test_unencodable_values_raise(bad: tuple[str, str]) -> None:
    with pytest.raises(wire.WireError):
        wire.encode_rdata(wire.type_code(bad[0]), bad[1])


# --- TXT ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "strings"),
    [
        ('"a b" "c"', [b"a b", b"c"]),
        ('"holder=enactor-a;expires=1700000000"', [b"holder=enactor-a;expires=1700000000"]),
        ('"say \\"hi\\"" "back\\\\slash"', [b'say "hi"', b"back\\slash"]),
        ('"tab\\011here"', [b"tab\there"]),
        ("unquoted words", [b"unquoted", b"words"]),
        ('""', [b""]),
        ("", [b""]),
    ],
)
def test_txt_strings(value: str, strings: list[bytes]) -> None:
    assert wire.txt_strings(value) == strings


def test_txt_text_round_trips() -> None:
    value = '"say \\"hi\\"" "tab\\011here" "plain"'
    assert wire.txt_text(wire.txt_strings(value)) == value


def test_long_txt_string_is_split_at_255() -> None:
    strings = wire.txt_strings('"' + "x" * 600 + '"')
    assert [len(s) for s in strings] == [255, 255, 90]
    rdata = wire.encode_rdata(16, '"' + "x" * 600 + '"')
    assert len(rdata) == 600 + 3


def test_txt_bytes_match_dnspython() -> None:
    value = '"a b" "c"'
    expected = dns.rdata.from_text("IN", "TXT", value).to_wire()
    assert wire.encode_rdata(16, value) == expected


# --- responses ----------------------------------------------------------------------


def test_parse_response_of_dnspython_message_with_its_own_compression() -> None:
    query = dns.message.make_query("Api.Example.com", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("api.example.com.", 30, "IN", "CNAME", "lb.example.com."))
    response.answer.append(dns.rrset.from_text("lb.example.com.", 5, "IN", "A", "10.0.0.1", "10.0.0.2"))
    parsed = wire.parse_response(response.to_wire())
    assert parsed.id == query.id and parsed.rcode == "NOERROR"
    assert parsed.question == ("Api.Example.com.", 1, 1)
    assert parsed.edns is not None
    # dnspython compresses lb.example.com against the question, so case follows the
    # question; and it does not promise the order of records within an rrset.
    assert parsed.answers[0] == ("Api.Example.com.", "CNAME", 30, "lb.Example.com.")
    assert sorted((n.lower(), t, ttl, v) for n, t, ttl, v in parsed.answers[1:]) == [
        ("lb.example.com.", "A", 5, "10.0.0.1"),
        ("lb.example.com.", "A", 5, "10.0.0.2"),
    ]


def test_unknown_type_decodes_in_rfc3597_form() -> None:
    assert wire.decode_rdata(257, b"\x00\x05issue", 0, 7) == "\\# 7 00056973737565"


def test_error_response_echoes_question_and_opt() -> None:
    query = wire.parse_query(wire.build_query(77, "x.example.org", "A", rd=True, edns_size=4096))
    data = wire.error_response(query.id, query.flags, query.question, 5, edns_size=1232)
    parsed = dns.message.from_wire(data)
    assert parsed.id == 77 and parsed.rcode() == dns.rcode.REFUSED
    assert parsed.flags & dns.flags.QR and parsed.flags & dns.flags.RD
    assert not parsed.flags & dns.flags.AA
    assert parsed.edns == 0 and parsed.payload == 1232
    assert parsed.question[0].name.to_text() == "x.example.org."


def test_error_response_without_question_parses() -> None:
    data = wire.error_response(9, 0, b"", 1)
    assert wire.parse_response(data).rcode == "FORMERR"
    assert dnslib.DNSRecord.parse(data).header.rcode == 1


def test_codes() -> None:
    assert wire.type_code("aaaa") == 28 and wire.type_code("TYPE65") == 65
    assert wire.type_name(65) == "TYPE65" and wire.type_name(5) == "CNAME"
    assert wire.rcode_name(3) == "NXDOMAIN" and wire.rcode_name(11) == "RCODE11"
    with pytest.raises(wire.WireError):
        wire.type_code("NOPE")


@pytest.mark.parametrize("qtype", [65, 0x4A, 0x5A])
def test_query_key_lowers_the_name_but_not_the_type(qtype: int) -> None:
    # Type 65 (HTTPS) is byte 0x41, ASCII 'A': lowering the whole question made it type 97.
    question = wire.encode_name("WWW.Example.com") + qtype.to_bytes(2, "big") + b"\x00\x01"
    data = wire.HEADER.pack(7, 0, 1, 0, 0, 0) + question
    query = wire.parse_query(data)
    assert query.qtype == qtype
    assert query.key[:-4] == b"\x03www\x07example\x03com\x00"
    assert int.from_bytes(query.key[-4:-2], "big") == qtype
    assert query.key[-4:] == query.question[-4:]
