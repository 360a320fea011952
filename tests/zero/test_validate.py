"""Input validation helpers (zero/state/validate.py)."""

from __future__ import annotations

import pytest

from zero.state import validate
from zero.state.validate import InvalidArgumentError


@pytest.mark.parametrize("name", ["a", "predicate.with.dots", "é" * 512, "x" * 1024, "名前"])
def test_tablet_name_ok(name: str) -> None:
    assert validate.tablet_name(name) == name


@pytest.mark.parametrize("name, match", [
    ("", "empty"), ("x" * 1025, "1025 bytes"), ("é" * 513, "1026 bytes"), ("a\ud800", "UTF-8"),
])
def test_tablet_name_bad(name: str, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        validate.tablet_name(name)


@pytest.mark.parametrize("name", ["a\x00b", "p\nq", "\n", "tab\tx", "cr\r", "del\x7f", "c1\x85", "esc\x1b[31m",
                                  "line\u2028sep", "para\u2029sep", " ", "   ", "\t", " \u3000 "])
def test_tablet_name_control_characters_and_blank_refused(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="control character|only whitespace"):
        validate.new_tablet_name(name)
    # apply() keeps the older rule: a log written before the stricter one replays alike.
    assert validate.tablet_name(name) == name


@pytest.mark.parametrize("name", [" leading", "trailing ", "in side", "emoji💥", "zero\u200bwidth"])
def test_tablet_name_spaces_inside_and_other_printables_ok(name: str) -> None:
    assert validate.new_tablet_name(name) == validate.tablet_name(name) == name


@pytest.mark.parametrize("n", [1, 1000, 1_000_000])
def test_count_ok(n: int) -> None:
    assert validate.count(n) == n


@pytest.mark.parametrize("n", [0, -1, 1_000_001, 1 << 64])
def test_count_bad(n: int) -> None:
    with pytest.raises(InvalidArgumentError, match="between 1 and 1,000,000"):
        validate.count(n)


@pytest.mark.parametrize("addr", ["localhost:5080", "10.0.0.1:1", "zero-1.zero.svc:65535",
                                  "[::1]:5080", "[fe80::1%eth0]:80", "a_b:9"])
def test_address_ok(addr: str) -> None:
    assert validate.address(addr) == addr


@pytest.mark.parametrize("addr", ["", "host", ":80", "host:", "host:0", "host:65536", "host:http",
                                  "::1:80", "a b:1", "-a:1", "host:١٢", "[zz]:1", "x" * 300 + ":1"])
def test_address_bad(addr: str) -> None:
    with pytest.raises(InvalidArgumentError):
        validate.address(addr)


@pytest.mark.parametrize("addr, match", [
    ("", "is empty"), ("host", "has no port"), ("[::1]", "has no port"), (":80", "has no host"),
    (":99999", "invalid port"), ("host:0", r"invalid port '0' \(1\.\.65535\)"), ("a b:1", "invalid host"),
])
def test_address_messages(addr: str, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        validate.address(addr, "--addr")


def test_address_port_zero_only_for_listen_addresses() -> None:
    assert validate.address("127.0.0.1:0", port_zero=True) == "127.0.0.1:0"
    for bad in (":0", "127.0.0.1:65536", "127.0.0.1"):
        with pytest.raises(InvalidArgumentError):
            validate.address(bad, port_zero=True)


def test_group_id_and_cluster_id() -> None:
    assert validate.group_id(1) == 1
    for bad in (0, 1 << 32):
        with pytest.raises(InvalidArgumentError):
            validate.group_id(bad)
    assert validate.cluster_id("abc-123") == "abc-123"
    for bad_cid in ("", "a\nb", "x" * 129):
        with pytest.raises(InvalidArgumentError):
            validate.cluster_id(bad_cid)


def test_errors_are_one_hierarchy() -> None:
    for cls in (validate.InvalidArgumentError, validate.NotFoundError, validate.FailedPreconditionError,
                validate.CorruptStateError, validate.ApplyOrderError):
        assert issubclass(cls, validate.ZeroError)
        assert cls.code.isupper()
