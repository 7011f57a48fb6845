"""DNS messages on the wire: just enough for the lab's fast path and a small client.

Why not dnslib or dnspython here: this module is imported at interpreter start by the
``getaddrinfo`` shim, so it must stay stdlib-only and cheap to import (struct and
ipaddress), and the server's hot path must not build objects per query. It knows the
record types Route 53 serves (A, AAAA, CNAME, NS, PTR, MX, TXT, SPF, SRV, SOA); any other
type decodes to the RFC 3597 form ``\\# <length> <hex>``.

Text forms follow Route 53, not RFC 1035: a TXT value is one or more quoted
character-strings (``"a b" "c"``) and an escape ``\\ddd`` in a TXT value or a name is
**octal**, as Route 53 documents it (``\\052`` is ``*``).
"""

from __future__ import annotations

import ipaddress
import struct

HEADER = struct.Struct("!HHHHHH")
"""id, flags, qdcount, ancount, nscount, arcount."""
RR_FIXED = struct.Struct("!HHIH")
"""type, class, ttl, rdlength: the fixed part after a record's owner name."""
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_SOA_TAIL = struct.Struct("!IIIII")
_SRV_HEAD = struct.Struct("!HHH")

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
CD = 0x0010
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F

CLASS_IN = 1
TYPE_OPT = 41
MAX_NAME_LENGTH = 255
MAX_LABEL_LENGTH = 63
MAX_UDP_CLASSIC = 512
POINTER_TO_QNAME = b"\xc0\x0c"
"""A compression pointer to the question name, which always starts at offset 12."""

TYPES: dict[str, int] = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
    "SRV": 33, "NAPTR": 35, "OPT": 41, "DS": 43, "SPF": 99, "IXFR": 251, "AXFR": 252,
    "ANY": 255, "CAA": 257,
}
TYPE_NAMES: dict[int, str] = {code: name for name, code in TYPES.items()}
RCODES: dict[str, int] = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
}
RCODE_NAMES: dict[int, str] = {code: name for name, code in RCODES.items()}

_NAME_TYPES = frozenset({TYPES["CNAME"], TYPES["NS"], TYPES["PTR"]})
_TXT_TYPES = frozenset({TYPES["TXT"], TYPES["SPF"]})


class WireError(ValueError):
    """Bytes that are not a DNS message we can read, or a value we cannot encode."""


# --- codes --------------------------------------------------------------------------


def type_code(name: str) -> int:
    """``"AAAA"`` -> 28; also accepts the generic ``TYPE123`` form."""
    upper = name.upper()
    code = TYPES.get(upper)
    if code is not None:
        return code
    if upper.startswith("TYPE") and upper[4:].isdigit() and int(upper[4:]) < 65536:
        return int(upper[4:])
    raise WireError(f"unknown record type {name!r}; use a type name such as A or TXT")


def type_name(code: int) -> str:
    """28 -> ``"AAAA"``; unknown codes get the generic ``TYPE<n>`` form."""
    return TYPE_NAMES.get(code) or f"TYPE{code}"


def rcode_name(code: int) -> str:
    """3 -> ``"NXDOMAIN"``."""
    return RCODE_NAMES.get(code) or f"RCODE{code}"


# --- names --------------------------------------------------------------------------


def _name_labels(name: str) -> list[bytes]:
    """Split a presentation-form name into label bytes, honouring backslash escapes."""
    if name in ("", "."):
        return []
    labels: list[bytes] = []
    current = bytearray()
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch == "\\":
            digits = name[i + 1 : i + 4]
            if len(digits) == 3 and all(c in "01234567" for c in digits):
                current.append(int(digits, 8) & 0xFF)
                i += 4
                continue
            if i + 1 >= n:
                raise WireError(f"name {name!r} ends in a lone backslash")
            current.extend(name[i + 1].encode("ascii", "strict"))
            i += 2
            continue
        if ch == ".":
            labels.append(_check_label(bytes(current), name))
            current = bytearray()
        else:
            try:
                current.extend(ch.encode("ascii"))
            except UnicodeEncodeError:
                raise WireError(f"name {name!r} is not ASCII; use its punycode form") from None
        i += 1
    if current:
        labels.append(_check_label(bytes(current), name))
    return labels


def _check_label(label: bytes, name: str) -> bytes:
    if not label:
        raise WireError(f"name {name!r} has an empty label")
    if len(label) > MAX_LABEL_LENGTH:
        raise WireError(f"name {name!r} has a label longer than 63 bytes")
    return label


def encode_name(name: str) -> bytes:
    """Presentation form (trailing dot optional) -> uncompressed wire form."""
    out = b"".join(bytes((len(label),)) + label for label in _name_labels(name)) + b"\x00"
    if len(out) > MAX_NAME_LENGTH:
        raise WireError(f"name {name!r} is longer than 255 bytes on the wire")
    return out


def _escaped(raw: bytes, special: tuple[int, ...], lowest: int) -> str:
    """Presentation form: ``special`` bytes backslash-escaped, unprintable ones as \\DDD octal."""
    parts = []
    for b in raw:
        if b in special:
            parts.append("\\" + chr(b))
        elif lowest <= b <= 0x7E:
            parts.append(chr(b))
        else:
            parts.append(f"\\{b:03o}")
    return "".join(parts)


def _label_text(label: bytes) -> str:
    return _escaped(label, (0x2E, 0x5C), 0x21)  # '.' and '\' stay readable, escaped


def name_to_text(wire_name: bytes) -> str:
    """Uncompressed wire name -> presentation form with a trailing dot (root is ``.``)."""
    labels = []
    pos = 0
    while pos < len(wire_name):
        length = wire_name[pos]
        if length == 0:
            break
        labels.append(_label_text(wire_name[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    return ".".join(labels) + "." if labels else "."


def decode_name(data: bytes, offset: int) -> tuple[str, int]:
    """Read a possibly compressed name at ``offset``; return it and the offset after it.

    Pointers must point backwards, which makes a loop impossible.
    """
    labels: list[str] = []
    end = -1
    pos = offset
    limit = pos
    total = 0
    while True:
        if pos >= len(data):
            raise WireError("name runs past the end of the message")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise WireError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= limit:
                raise WireError("compression pointer does not point backwards")
            pos = limit = target
            continue
        if length & 0xC0:
            raise WireError(f"unsupported label type 0x{length:02x}")
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if pos + 1 + length > len(data):
            raise WireError("label runs past the end of the message")
        total += length + 1
        if total > MAX_NAME_LENGTH:
            raise WireError("name longer than 255 bytes")
        labels.append(_label_text(data[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    return (".".join(labels) + "." if labels else "."), end


def _skip_name(data: bytes, pos: int) -> int:
    """Offset just after the name at ``pos`` (without following pointers)."""
    n = len(data)
    while True:
        if pos >= n:
            raise WireError("name runs past the end of the message")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length & 0xC0:
            raise WireError(f"unsupported label type 0x{length:02x}")
        if length == 0:
            return pos + 1
        pos += 1 + length


# --- queries ------------------------------------------------------------------------


class Query:
    """A parsed query: what the server's fast path needs and nothing more.

    ``question`` is the question section exactly as sent (0x20 case kept) so that an
    answer can echo it byte for byte; ``key`` is the same bytes with the name lower-cased
    (qtype and qclass untouched), which is what the server caches answers under.
    """

    __slots__ = ("id", "flags", "question", "key", "qtype", "qclass", "edns", "udp_size")

    def __init__(
        self, qid: int, flags: int, question: bytes, qtype: int, qclass: int,
        edns: bool, udp_size: int,
    ) -> None:
        self.id = qid
        self.flags = flags
        self.question = question
        # ASCII-only lowering of the name (label lengths are < 'A'). The 4 type/class bytes
        # stay as sent: lowering them would turn type 65 (0x41, 'A') into 97.
        self.key = question[:-4].lower() + question[-4:]
        self.qtype = qtype
        self.qclass = qclass
        self.edns = edns
        self.udp_size = udp_size

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def qname_wire(self) -> bytes:
        """The question name as sent, uncompressed wire form."""
        return self.question[:-4]

    @property
    def qname(self) -> str:
        """The question name lower-cased, presentation form with a trailing dot."""
        return name_to_text(self.key[:-4])


def read_header(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """The six header fields, or None when the message is shorter than a header."""
    if len(data) < HEADER.size:
        return None
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    return qid, flags, qdcount, ancount, nscount, arcount


def parse_query(data: bytes) -> Query:
    """Parse a query with exactly one question; raise :class:`WireError` otherwise."""
    if len(data) < 12:
        raise WireError("message shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if qdcount != 1:
        raise WireError(f"query has {qdcount} questions; exactly one is supported")
    n = len(data)
    pos = 12
    while True:
        if pos >= n:
            raise WireError("question name runs past the end of the message")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > MAX_LABEL_LENGTH:
            raise WireError("compressed or extended label in the question")
        pos += 1 + length
    if pos - 12 > MAX_NAME_LENGTH or pos + 4 > n:
        raise WireError("question name too long or question truncated")
    qtype, qclass = _U16X2.unpack_from(data, pos)
    end = pos + 4
    edns, udp_size = False, MAX_UDP_CLASSIC
    if ancount or nscount or arcount:
        edns, udp_size = _find_opt(data, end, ancount + nscount + arcount)
    return Query(qid, flags, data[12:end], qtype, qclass, edns, udp_size)


def _find_opt(data: bytes, pos: int, count: int) -> tuple[bool, int]:
    """Scan the remaining records for an OPT; return (present, advertised UDP size)."""
    for _ in range(count):
        pos = _skip_name(data, pos)
        if pos + RR_FIXED.size > len(data):
            raise WireError("record header runs past the end of the message")
        rtype, rclass, _ttl, rdlength = RR_FIXED.unpack_from(data, pos)
        pos += RR_FIXED.size + rdlength
        if pos > len(data):
            raise WireError("record data runs past the end of the message")
        if rtype == TYPE_OPT:
            return True, max(MAX_UDP_CLASSIC, rclass)
    return False, MAX_UDP_CLASSIC


def build_query(
    qid: int, name: str, qtype: int | str = "A", *, rd: bool = False,
    edns_size: int | None = None,
) -> bytes:
    """A standard query with one IN question (and an OPT record when ``edns_size``)."""
    code = type_code(qtype) if isinstance(qtype, str) else qtype
    flags = RD if rd else 0
    arcount = 1 if edns_size is not None else 0
    message = HEADER.pack(qid & 0xFFFF, flags, 1, 0, 0, arcount)
    message += encode_name(name) + _U16X2.pack(code, CLASS_IN)
    if edns_size is not None:
        message += opt_record(edns_size)
    return message


def opt_record(udp_size: int) -> bytes:
    """An EDNS(0) OPT pseudo-record advertising ``udp_size``, no options, DO clear."""
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, udp_size, 0, 0)


def error_response(
    qid: int, query_flags: int, question: bytes, rcode: int, *, edns_size: int | None = None,
) -> bytes:
    """A reply carrying only an rcode (and the question when it could be read)."""
    flags = QR | (query_flags & (OPCODE_MASK | RD | CD)) | rcode
    arcount = 1 if edns_size is not None else 0
    message = HEADER.pack(qid, flags, 1 if question else 0, 0, 0, arcount) + question
    if edns_size is not None:
        message += opt_record(edns_size)
    return message


# --- record data --------------------------------------------------------------------


def txt_strings(value: str) -> list[bytes]:
    """Route 53 TXT text -> character-strings: ``"a b" "c"`` -> ``[b"a b", b"c"]``.

    Unquoted runs split on blanks (zone-file rules); a string longer than 255 bytes is
    split, as it cannot be sent otherwise; an empty value is one empty string.
    """
    strings: list[bytes] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in " \t":
            i += 1
            continue
        quoted = value[i] == '"'
        if quoted:
            i += 1
        current = bytearray()
        while i < n:
            ch = value[i]
            if quoted and ch == '"':
                i += 1
                break
            if not quoted and ch in " \t":
                break
            if ch == "\\" and i + 1 < n:
                digits = value[i + 1 : i + 4]
                if len(digits) == 3 and all(c in "01234567" for c in digits):
                    current.append(int(digits, 8) & 0xFF)
                    i += 4
                    continue
                current.extend(value[i + 1].encode("utf-8"))
                i += 2
                continue
            current.extend(ch.encode("utf-8"))
            i += 1
        strings.extend(bytes(current[j : j + 255]) for j in range(0, max(len(current), 1), 255))
    return strings or [b""]


def txt_text(strings: list[bytes]) -> str:
    """Character-strings -> Route 53 TXT text (quoted, ``"`` and ``\\`` escaped)."""
    return " ".join('"' + _txt_escape(s) + '"' for s in strings)


def _txt_escape(raw: bytes) -> str:
    return _escaped(raw, (0x22, 0x5C), 0x20)  # '"' and '\' escaped; space is printable here


def _fields(value: str, count: int, rtype: str) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise WireError(f"{rtype} value {value!r} needs {count} fields")
    return parts


def _int_field(text: str, bits: int, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise WireError(f"{what} {text!r} is not a number") from None
    if not 0 <= number < (1 << bits):
        raise WireError(f"{what} {number} does not fit in {bits} bits")
    return number


def encode_rdata(rtype: int, value: str) -> bytes:
    """Route 53 value text -> rdata bytes, names uncompressed."""
    writer = RecordWriter("", start=12, compress=False)
    return writer.rdata(rtype, value)


def decode_rdata(rtype: int, data: bytes, start: int, length: int) -> str:
    """rdata at ``data[start:start+length]`` -> Route 53 value text."""
    end = start + length
    rdata = data[start:end]
    if rtype == 1 and length == 4:
        return ".".join(map(str, rdata))
    if rtype == 28 and length == 16:
        return str(ipaddress.IPv6Address(rdata))
    if rtype in _NAME_TYPES:
        return decode_name(data, start)[0]
    if rtype in _TXT_TYPES:
        return txt_text(_read_strings(rdata))
    if rtype == 15 and length >= 3:
        return f"{_U16.unpack_from(data, start)[0]} {decode_name(data, start + 2)[0]}"
    if rtype == 6:
        return _decode_soa(data, start, end)
    if rtype == 33 and length >= 7:
        prio, weight, port = _SRV_HEAD.unpack_from(data, start)
        return f"{prio} {weight} {port} {decode_name(data, start + 6)[0]}"
    return f"\\# {length} {rdata.hex()}".rstrip()


def _read_strings(rdata: bytes) -> list[bytes]:
    strings = []
    pos = 0
    while pos < len(rdata):
        length = rdata[pos]
        if pos + 1 + length > len(rdata):
            raise WireError("TXT character-string runs past its record")
        strings.append(rdata[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return strings


def _decode_soa(data: bytes, start: int, end: int) -> str:
    mname, pos = decode_name(data, start)
    rname, pos = decode_name(data, pos)
    if pos + _SOA_TAIL.size > end:
        raise WireError("SOA record too short")
    numbers = _SOA_TAIL.unpack_from(data, pos)
    return " ".join([mname, rname, *map(str, numbers)])


class RecordWriter:
    """Appends resource records after a header and question, compressing names.

    ``start`` is the offset the first record will have in the message (12 plus the
    question's length), ``qname`` the question name, which sits at offset 12 and is the
    first compression target: an answer owned by the question name costs two bytes.
    """

    def __init__(self, qname: str, start: int, *, compress: bool = True) -> None:
        self._buf = bytearray()
        self._start = start
        self._compress = compress
        self._offsets: dict[tuple[bytes, ...], int] = {}
        if compress and qname:
            self._remember(tuple(label.lower() for label in _name_labels(qname)), 12)

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def add(self, owner: str, rtype: int, ttl: int, value: str) -> None:
        """Append one record (class IN) whose data is given as Route 53 text."""
        self.name(owner)
        fixed_at = len(self._buf)
        self._buf.extend(RR_FIXED.pack(rtype, CLASS_IN, ttl & 0xFFFFFFFF, 0))
        self._write_rdata(rtype, value)
        rdlength = len(self._buf) - fixed_at - RR_FIXED.size
        if rdlength > 0xFFFF:
            raise WireError(f"record data for {owner} is longer than 65535 bytes")
        _U16.pack_into(self._buf, fixed_at + 8, rdlength)

    def name(self, name: str) -> None:
        """Write ``name``, as a pointer to an earlier copy of its longest known suffix."""
        labels = tuple(_name_labels(name))
        if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_LENGTH:
            raise WireError(f"name {name!r} is longer than 255 bytes on the wire")
        keys = tuple(label.lower() for label in labels)
        for i in range(len(labels)):
            pointer = self._offsets.get(keys[i:]) if self._compress else None
            if pointer is not None:
                self._buf.extend(_U16.pack(0xC000 | pointer))
                return
            self._remember(keys[i:], self._start + len(self._buf))
            self._buf.append(len(labels[i]))
            self._buf.extend(labels[i])
        self._buf.append(0)

    def rdata(self, rtype: int, value: str) -> bytes:
        """Encode only the rdata of a record, for callers that need the bytes alone."""
        mark = len(self._buf)
        self._write_rdata(rtype, value)
        return bytes(self._buf[mark:])

    def _remember(self, suffix: tuple[bytes, ...], offset: int) -> None:
        if self._compress and suffix and offset < 0x4000 and suffix not in self._offsets:
            self._offsets[suffix] = offset

    def _write_rdata(self, rtype: int, value: str) -> None:
        buf = self._buf
        if rtype == 1:
            buf.extend(_address(ipaddress.IPv4Address, value))
        elif rtype == 28:
            buf.extend(_address(ipaddress.IPv6Address, value))
        elif rtype in _NAME_TYPES:
            self.name(value.strip())
        elif rtype in _TXT_TYPES:
            for string in txt_strings(value):
                buf.append(len(string))
                buf.extend(string)
        elif rtype == 15:
            pref, exchange = _fields(value, 2, "MX")
            buf.extend(_U16.pack(_int_field(pref, 16, "MX preference")))
            self.name(exchange)
        elif rtype == 6:
            self._write_soa(value)
        elif rtype == 33:
            prio, weight, port, target = _fields(value, 4, "SRV")
            buf.extend(_SRV_HEAD.pack(
                _int_field(prio, 16, "SRV priority"), _int_field(weight, 16, "SRV weight"),
                _int_field(port, 16, "SRV port"),
            ))
            buf.extend(encode_name(target))  # RFC 2782: no compression in SRV
        else:
            raise WireError(f"cannot encode {type_name(rtype)} values; the lab serves "
                            "A, AAAA, CNAME, NS, PTR, MX, TXT, SPF, SRV and SOA")

    def _write_soa(self, value: str) -> None:
        parts = _fields(value, 7, "SOA")
        self.name(parts[0])
        self.name(parts[1])
        self._buf.extend(_SOA_TAIL.pack(*(_int_field(p, 32, "SOA field") for p in parts[2:])))


def _address(kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address], value: str) -> bytes:
    try:
        return kind(value.strip()).packed
    except ValueError:
        raise WireError(f"{value!r} is not an {kind.__name__[:4]} address") from None


# --- responses ----------------------------------------------------------------------

Record = tuple[str, str, int, str]
"""(owner name, type name, ttl, value text) as a response carries it."""


class Response:
    """A parsed response: header fields, the question, and records as text."""

    __slots__ = ("id", "flags", "question", "answers", "authority", "additional", "edns")

    def __init__(self) -> None:
        self.id = 0
        self.flags = 0
        self.question: tuple[str, int, int] | None = None
        self.answers: list[Record] = []
        self.authority: list[Record] = []
        self.additional: list[Record] = []
        self.edns: int | None = None

    @property
    def rcode(self) -> str:
        return rcode_name(self.flags & RCODE_MASK)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)

    @property
    def authoritative(self) -> bool:
        return bool(self.flags & AA)


def parse_response(data: bytes) -> Response:
    """Parse any DNS message into a :class:`Response`; OPT is reported as ``edns``."""
    header = read_header(data)
    if header is None:
        raise WireError("message shorter than a DNS header")
    response = Response()
    response.id, response.flags, qdcount, ancount, nscount, arcount = header
    pos = 12
    for _ in range(qdcount):
        name, pos = decode_name(data, pos)
        if pos + 4 > len(data):
            raise WireError("question truncated")
        qtype, qclass = _U16X2.unpack_from(data, pos)
        pos += 4
        response.question = response.question or (name, qtype, qclass)
    for section, count in (
        (response.answers, ancount), (response.authority, nscount),
        (response.additional, arcount),
    ):
        for _ in range(count):
            pos = _read_record(data, pos, section, response)
    return response


def _read_record(data: bytes, pos: int, section: list[Record], response: Response) -> int:
    name, pos = decode_name(data, pos)
    if pos + RR_FIXED.size > len(data):
        raise WireError("record header truncated")
    rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, pos)
    pos += RR_FIXED.size
    if pos + rdlength > len(data):
        raise WireError("record data truncated")
    if rtype == TYPE_OPT:
        response.edns = int(rclass)
    else:
        section.append((name, type_name(rtype), ttl, decode_rdata(rtype, data, pos, rdlength)))
    end: int = pos + rdlength
    return end
