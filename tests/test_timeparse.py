from datetime import UTC, datetime

import pytest

from pipeline.core.timeparse import format_time, parse_time

NINE_FORTY_ONE = datetime(2007, 1, 9, 9, 41, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "01/09/2007 09:41:00",  # 24-hour US locale
        "1/9/2007 09:41:00",
        "01/09/2007 09:41:00 AM",
        "1/9/2007 9:41:00 AM",
        "1/9/2007 10:41:00 AM +01:00",
        "2007-01-09T09:41:00",  # no zone: UTC
        "2007-01-09 09:41:00",  # space instead of T
        "2007-01-09T09:41:00Z",
        "2007-01-09T09:41:00+00:00",
        "2007-01-09T11:41:00+02:00",
        "2007-01-09T04:41:00-05:00",
        "2007-01-09T9:41:00Z",  # one-digit hour, which fromisoformat rejects
    ],
)
def test_every_exported_form_is_the_same_instant(value: str) -> None:
    assert parse_time(value) == NINE_FORTY_ONE


@pytest.mark.parametrize(
    ("value", "micro"),
    [
        ("2007-01-09T09:41:00.22Z", 220000),
        ("2007-01-09T09:41:00.6816663Z", 681666),  # 7 digits, as Entra writes them
        ("2007-01-09T09:41:00.535404056Z", 535404),
        ("2007-01-09T9:41:00.958Z", 958000),
        ("1/9/2007 9:41:00.5 AM", 500000),
    ],
)
def test_fractions_are_kept_to_the_microsecond(value: str, micro: int) -> None:
    assert parse_time(value) == NINE_FORTY_ONE.replace(microsecond=micro)


def test_pm_and_midnight_hours() -> None:
    assert parse_time("8/22/2022 6:07:16 PM") == datetime(2022, 8, 22, 18, 7, 16, tzinfo=UTC)
    assert parse_time("8/22/2022 12:07:16 AM") == datetime(2022, 8, 22, 0, 7, 16, tzinfo=UTC)
    assert parse_time("8/22/2022 12:07:16 PM") == datetime(2022, 8, 22, 12, 7, 16, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "yesterday", "2007-13-09T09:41:00Z", "1/9/2007 13:41:00 PM"])
def test_garbage_raises_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_time(value)


def test_results_are_utc_and_format_with_microseconds() -> None:
    parsed = parse_time("2019-10-18T04:45:48.0729893-05:00")
    assert parsed.tzinfo is UTC
    assert format_time(parsed) == "2019-10-18T09:45:48.072989Z"
