from __future__ import annotations

from pathlib import Path

import pytest

from lvmharness.core.parsing import (
    parse_bytes,
    parse_int_in,
    parse_int_list,
    parse_list,
    parse_output_file,
    parse_output_folder,
    parse_seconds,
)


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


def test_int_in_range() -> None:
    assert parse_int_in("16", 16, 4096) == 16 and parse_int_in("4096", 16, 4096) == 4096
    assert parse_int_in("7", 0) == 7
    with pytest.raises(ValueError, match=r"expected an integer, got '1\.5'"):
        parse_int_in("1.5", 1)
    with pytest.raises(ValueError, match="must be an integer >= 1, got 0"):
        parse_int_in("0", 1)
    with pytest.raises(ValueError, match="must be an integer between 16 and 4,096, got 4097"):
        parse_int_in("4097", 16, 4096)


def test_output_paths(tmp_path: Path) -> None:
    a_file = tmp_path / "f.json"
    a_file.write_text("{}")
    assert parse_output_file(str(tmp_path / "new" / "g.json")) == tmp_path / "new" / "g.json"
    assert parse_output_folder(str(tmp_path / "runs")) == tmp_path / "runs"
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        parse_output_file(str(tmp_path))
    with pytest.raises(ValueError, match=r"is a file, so .* cannot be created"):
        parse_output_file(str(a_file / "g.json"))
    with pytest.raises(ValueError, match="is a file; give a folder"):
        parse_output_folder(str(a_file))
    with pytest.raises(ValueError, match="is a file; give a folder"):
        parse_output_folder(str(a_file / "sub"))
