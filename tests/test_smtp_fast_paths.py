"""The edge's fast paths give exactly what aiosmtpd's slow paths give."""

from __future__ import annotations

import asyncio
from email._header_value_parser import get_angle_addr

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp import codes
from gateway.smtp.data_reader import DataResult, read_data
from gateway.smtp.protocol import _PLAIN_ANGLE_ADDR
from gateway.smtp.transparency import (
    DOT_PROBES,
    find_dot_line,
    find_terminator,
    has_dot_line,
)

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
pieces = st.text(alphabet=ATEXT + ".@<>()\" []:\\", min_size=0, max_size=12)
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=6)


@st.composite
def commands(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(atoms, min_size=1, max_size=3)))
    domain = ".".join(draw(st.lists(st.text(alphabet="abc019-", min_size=1, max_size=5),
                                    min_size=1, max_size=3)))
    noise = draw(pieces)
    where = draw(st.sampled_from(["before", "inside", "after", "none"]))
    address = f"{local}@{domain}"
    if where == "inside":
        address = address[: len(address) // 2] + noise + address[len(address) // 2:]
    text = f"<{address}>"
    if where == "before":
        text = noise + text
    if where == "after":
        text += draw(st.sampled_from(["", " ", "  "])) + noise
    return text


@given(commands())
@settings(max_examples=400, deadline=None)
def test_plain_address_fast_path_agrees_with_the_parser(command: str) -> None:
    match = _PLAIN_ANGLE_ADDR.match(command)
    if match is None:
        return  # the full parser handles it
    address, rest = get_angle_addr(command)
    assert (match.group(1), match.group(2)) == (address.addr_spec, rest)


def test_fast_path_leaves_unusual_addresses_to_the_parser() -> None:
    for command in ("<>", '<"q u"@x.example>', "<@route:a@b.example>", "<a@[1.2.3.4]>",
                    "<a..b@x.example>", "<a@b.example> (comment) SIZE=1", "a@b.example"):
        assert _PLAIN_ANGLE_ADDR.match(command) is None, command


def _read(*chunks: bytes, max_bytes: int | None = 10_000,
          max_line: int = 1001) -> tuple[DataResult, bytes]:
    async def run() -> tuple[DataResult, bytes]:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        result = await read_data(reader, max_bytes=max_bytes, max_line=max_line)
        return result, await reader.read()

    return asyncio.run(run())


def test_plain_message_and_pipelined_command_after_it() -> None:
    result, left = _read(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert result.content == b"Subject: x\r\n\r\nbody\r\n"
    assert left == b"QUIT\r\n"


def test_empty_message() -> None:
    result, left = _read(b".\r\nMAIL FROM:<a@b.example>\r\n")
    assert result.content == b""
    assert left == b"MAIL FROM:<a@b.example>\r\n"


def test_dot_stuffing_is_undone_on_every_line_including_the_first() -> None:
    result, _ = _read(b"..first\r\nmid\r\n..\r\n...x\r\n.\r\n")
    assert result.content == b".first\r\nmid\r\n.\r\n..x\r\n"


def test_terminator_split_across_reads() -> None:
    for cut in range(1, 6):
        data = b"a\r\nb\r\n.\r\nNOOP\r\n"
        split = data.index(b"\r\n.\r\n") + cut
        result, left = _read(data[:split], data[split:])
        assert result.content == b"a\r\nb\r\n", cut
        assert left == b"NOOP\r\n", cut


def test_bare_lf_dot_does_not_end_the_data() -> None:
    # \n.\r\n and \r.\r are smuggling attempts, not terminators.
    result, left = _read(b"a\n.\r\nMAIL FROM:<x@y.example>\r\n\r.\rz\r\n.\r\n")
    assert result.content == b"a\n.\r\nMAIL FROM:<x@y.example>\r\n\r.\rz\r\n"
    assert left == b""


def test_line_limit_counts_the_crlf() -> None:
    ok, _ = _read(b"x" * 999 + b"\r\n.\r\n", max_line=1001)
    assert ok.content is not None
    long, left = _read(b"x" * 1000 + b"\r\n.\r\nQUIT\r\n", max_line=1001)
    assert long.too_long and long.content is None
    assert left == b"QUIT\r\n"


def test_bare_line_ends_are_named_before_the_line_limit() -> None:
    unix, left = _read(b"line\n" * 300 + b"\r\n.\r\nQUIT\r\n", max_line=1001)
    assert unix.bare_line_end == codes.BARE_LF and not unix.too_long
    assert unix.content is None and left == b"QUIT\r\n"
    old_mac, _ = _read(b"line\r" * 300 + b"\r\n.\r\n", max_line=1001)
    assert old_mac.bare_line_end == codes.BARE_CR


def test_too_much_data_is_read_to_the_end_but_not_kept() -> None:
    big = b"y" * 500 + b"\r\n"
    result, left = _read(*([big] * 200), b".\r\nQUIT\r\n", max_bytes=10_000)
    assert result.too_much and result.content is None
    assert left == b"QUIT\r\n"


def test_connection_closed_before_the_terminator() -> None:
    result, _ = _read(b"half a message\r\n")
    assert result.closed


def test_long_line_found_across_window_boundaries() -> None:
    from gateway.smtp.data_reader import _has_long_line

    lines = b"a" * 76 + b"\r\n"
    for where in (0, 5, 100, 1000):
        raw = lines * where + b"z" * 1000 + b"\r\n" + lines * 3
        assert _has_long_line(raw, 1001, window=64), where
        assert not _has_long_line(lines * where, 1001, window=64), where
    assert not _has_long_line(b"x" * 999, 1001)
    assert _has_long_line(b"x" * 1000, 1001)


@settings(max_examples=400, deadline=None)
@given(lengths=st.lists(st.integers(0, 1100), max_size=40),
       breaks=st.lists(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b"\n\r"]), min_size=1),
       max_line=st.sampled_from([20, 40, 77, 1000, 1001]), tail=st.booleans())
def test_the_long_line_probe_answers_as_splitting_every_line(
        lengths: list[int], breaks: list[bytes], max_line: int, tail: bool) -> None:
    from gateway.smtp.data_reader import _has_long_line

    raw = b"".join(b"x" * n + breaks[i % len(breaks)] for i, n in enumerate(lengths))
    if tail and lengths:
        raw += b"y" * lengths[0]  # a last line without a line break
    expected = max(map(len, raw.split(b"\r\n"))) > max_line - 2
    assert _has_long_line(raw, max_line) == expected
    assert _has_long_line(bytearray(raw), max_line, window=64) == expected


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.sampled_from([b".", b"\r\n", b"\r\n.", b"x", b"..", b"\r", b"\n",
                                        b"a.b", b"\r\n..", b"." * 70]), max_size=120))
def test_a_stuffed_line_is_found_as_by_searching_for_it(pieces: list[bytes]) -> None:
    buffer = bytearray(b"\r\n" + b"".join(pieces))
    assert has_dot_line(buffer) == (buffer.find(b"\r\n.") >= 0)
    assert has_dot_line(bytes(buffer[2:])) == (buffer.find(b"\r\n.", 2) >= 0)
    for start in range(min(len(buffer), 40)):
        assert find_dot_line(buffer, start) == buffer.find(b"\r\n.", start)
        assert find_terminator(buffer, start) == buffer.find(b"\r\n.\r\n", start)


def test_many_dots_fall_back_to_the_search_and_still_find_it() -> None:
    # More dots than are probed one by one, none at a line start, then the terminator.
    for dots in (DOT_PROBES - 1, DOT_PROBES, DOT_PROBES + 1, 5 * DOT_PROBES):
        data = b"\r\nText" + b"x." * dots + b"\r\n..gestopft\r\n.\r\n"
        assert find_dot_line(data) == data.index(b"\r\n..")
        assert find_terminator(data) == len(data) - 5
        assert find_terminator(data[:-1]) == -1
