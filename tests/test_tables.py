"""robot_stack.tables.write_rows: the one CSV writer of the result tables."""

from __future__ import annotations

import csv

import pytest

from robot_stack.tables import write_rows


def test_rows_are_written_under_the_given_header_with_missing_fields_blank(tmp_path):
    path = write_rows(tmp_path / "t.csv", [{"a": 1, "b": 2.5}, {"a": 3}], ("a", "b"))
    assert path.read_text().splitlines() == ["a,b", "1,2.5", "3,"]
    assert not list(tmp_path.glob("*.tmp"))


def test_the_default_header_is_every_key_in_first_seen_order(tmp_path):
    write_rows(tmp_path / "t.csv", [{"b": 1}, {"a": 2, "b": 3}])
    with open(tmp_path / "t.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"b": "1", "a": ""}, {"b": "3", "a": "2"}]


def test_a_key_outside_the_header_is_refused_and_the_old_table_stays(tmp_path):
    path = write_rows(tmp_path / "t.csv", [{"a": 1}])
    with pytest.raises(ValueError, match="'z'"):
        write_rows(path, [{"a": 2, "z": 0}], ("a",))
    assert path.read_text().splitlines() == ["a", "1"]
