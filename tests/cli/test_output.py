"""Table and field rendering, ages and durations: what people read."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2

from cts.cli import output


def test_table_columns_are_aligned_without_trailing_blanks() -> None:
    text = output.render_table(["NAME", "X"], [["a", "1"], ["longer", ""]])
    assert text.splitlines() == ["NAME     X", "a        1", "longer"]


def test_fields_align_values_after_the_longest_label() -> None:
    text = output.render_fields([("Name", "a"), ("Display name", "b")])
    assert text.splitlines() == ["Name:          a", "Display name:  b"]


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromSeconds(seconds)
    return ts


def test_age_uses_the_largest_whole_unit() -> None:
    now = datetime.fromtimestamp(1_000_000, UTC)
    assert output.age(_ts(1_000_000 - 42), now) == "42s"
    assert output.age(_ts(1_000_000 - 300), now) == "5m"
    assert output.age(_ts(1_000_000 - 3 * 3600 - 5), now) == "3h"
    assert output.age(_ts(1_000_000 - 2 * 86400), now) == "2d"


def test_unset_times_print_as_a_dash() -> None:
    assert output.age(timestamp_pb2.Timestamp()) == "-"
    assert output.timestamp(timestamp_pb2.Timestamp()) == "-"


def test_timestamp_is_rfc3339_utc() -> None:
    assert output.timestamp(_ts(1_700_000_000)) == "2023-11-14T22:13:20Z"


def test_durations_are_short() -> None:
    assert output.duration(duration_pb2.Duration(nanos=250_000_000)) == "250ms"
    assert output.duration(duration_pb2.Duration(seconds=1, nanos=500_000_000)) == "1.5s"
    assert output.duration(duration_pb2.Duration(seconds=60)) == "1m"
    assert output.duration(duration_pb2.Duration(seconds=90)) == "90s"
    assert output.duration(duration_pb2.Duration(seconds=86400)) == "1d"


def test_money_shows_at_most_eight_decimals_without_the_division_noise() -> None:
    assert output.money("-0.1158876315000000000000000010") == "-0.11588763"
    assert output.money("12.5000") == "12.5"
    assert output.money("1E+3") == "1000"
    assert output.money("-0.000000001") == "0"  # rounds to zero: no "-0"
    assert output.money("0.000000005") == "0"  # half to even
    assert output.money("0.000000015") == "0.00000002"
    assert output.money("") == "-"
    assert output.money("NaN?") == "NaN?"  # not a number: shown as sent
