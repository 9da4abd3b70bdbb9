"""Date functions of the expression language: dates are ISO text (``2024-03-31``), a month (a
period) is ``2024-03``."""

from __future__ import annotations

import calendar
import datetime as _dt
from collections.abc import Callable
from typing import Any

from .errors import ExprError
from .functions import integer, show, type_name


def to_date(x: Any) -> _dt.date:
    if isinstance(x, str):
        try:
            if len(x) == 10:
                return _dt.date.fromisoformat(x)
        except ValueError:
            pass
    raise ExprError(f"expects a date like '2024-03-31', got {type_name(x)} {show(x)}")


def to_month(x: Any) -> _dt.date:
    """The first day of a date's month, or of a month written ``2024-03``."""
    if isinstance(x, str) and len(x) == 7:
        try:
            return _dt.date.fromisoformat(x + "-01")
        except ValueError:
            pass
        raise ExprError(f"expects a month like '2024-03', got {x!r}")
    return to_date(x).replace(day=1)


def f_date(y: Any, m: Any, d: Any) -> str:
    try:
        return _dt.date(integer(y), integer(m), integer(d)).isoformat()
    except ValueError as e:
        raise ExprError(f"date({y!r}, {m!r}, {d!r}): {e}") from None


def f_add_days(d: Any, n: Any) -> str:
    k = integer(n, "a number of days")
    try:
        return (to_date(d) + _dt.timedelta(days=k)).isoformat()
    except OverflowError:
        raise ExprError(f"add_days: {d!r} + {k} days is out of range") from None


def f_add_months(d: Any, n: Any) -> str:
    day = to_date(d)
    k = integer(n, "a number of months")
    total = day.year * 12 + day.month - 1 + k
    y, m = divmod(total, 12)
    if not 1 <= y <= 9999:
        raise ExprError(f"add_months: {d!r} + {k} months is out of range")
    return _dt.date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1])).isoformat()


def f_days_between(a: Any, b: Any) -> int:
    return (to_date(b) - to_date(a)).days


def f_month(d: Any) -> str:
    return to_month(d).isoformat()[:7]


def f_month_start(x: Any) -> str:
    return to_month(x).isoformat()


def f_month_end(x: Any) -> str:
    m = to_month(x)
    return m.replace(day=calendar.monthrange(m.year, m.month)[1]).isoformat()


def f_days_in_month(x: Any) -> int:
    m = to_month(x)
    return calendar.monthrange(m.year, m.month)[1]


def f_year(d: Any) -> int:
    return to_month(d).year


def f_month_number(d: Any) -> int:
    return to_month(d).month


def f_day(d: Any) -> int:
    return to_date(d).day


def f_weekday(d: Any) -> int:
    return to_date(d).weekday()


def f_is_date(x: Any) -> bool:
    try:
        to_date(x)
        return True
    except ExprError:
        return False



DATE_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "date": (f_date, 3, 3),
    "add_days": (f_add_days, 2, 2),
    "add_months": (f_add_months, 2, 2),
    "days_between": (f_days_between, 2, 2),
    "month": (f_month, 1, 1),
    "month_start": (f_month_start, 1, 1),
    "month_end": (f_month_end, 1, 1),
    "days_in_month": (f_days_in_month, 1, 1),
    "year": (f_year, 1, 1),
    "month_number": (f_month_number, 1, 1),
    "day": (f_day, 1, 1),
    "weekday": (f_weekday, 1, 1),
    "is_date": (f_is_date, 1, 1),
}

__all__ = ["DATE_FUNCTIONS", "to_date", "to_month"]
