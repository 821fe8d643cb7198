from __future__ import annotations

import pytest

from lvmharness.parsing import parse_bytes, parse_int_list, parse_list, parse_seconds


def test_lists() -> None:
    assert parse_list(" a, b,,c ") == ["a", "b", "c"]
    assert parse_int_list("1, 8,32") == [1, 8, 32]
    with pytest.raises(ValueError, match="names nothing"):
        parse_list(" , ")
    with pytest.raises(ValueError, match="'x8' is not an integer"):
        parse_int_list("1,x8")
    with pytest.raises(ValueError, match="0 must be a positive integer"):
        parse_int_list("0")
    with pytest.raises(ValueError, match="-3 must be a positive integer"):
        parse_int_list("1,-3")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "-1", "1e400", "two"])
def test_seconds_are_finite_and_not_negative(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        parse_seconds(bad)


def test_seconds() -> None:
    assert parse_seconds("0") == 0.0 and parse_seconds("2.5") == 2.5


def test_bytes() -> None:
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("1.5GB") == 1_500_000_000 and parse_bytes("1000") == 1000
    with pytest.raises(ValueError, match="not understood"):
        parse_bytes("2 parsecs")
