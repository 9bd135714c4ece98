"""Address parsing and normalization."""

from __future__ import annotations

import pytest

from taskmill.comm import normalize_address, parse_address, unparse_address

pytestmark = pytest.mark.timeout(5)


@pytest.mark.parametrize(
    "address, normal",
    [
        ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("tcp://localhost:0", "tcp://localhost:0"),
        ("tcp://[::1]:80", "tcp://[::1]:80"),
        ("inproc://abc/1", "inproc://abc/1"),
    ],
)
def test_normalize(address: str, normal: str) -> None:
    assert normalize_address(address) == normal
    assert unparse_address(*parse_address(normal)) == normal


def test_parse() -> None:
    assert parse_address("tcp://[::1]:80") == ("tcp", "::1", 80)
    assert parse_address("inproc://x") == ("inproc", "x", 0)


@pytest.mark.parametrize(
    "bad", ["127.0.0.1", "tcp://host:", "tcp://:80", "udp://h:1", "h:99999", "::1:80", 8786]
)
def test_bad_addresses_say_the_expected_form(bad: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        normalize_address(bad)  # type: ignore[arg-type]
