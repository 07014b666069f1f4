"""Due dates in meeting speech: "by Friday", "by the end of June", "before March 3rd, 2026".

``find_due`` returns the words that state a due date and, when it can be resolved, the
date as ISO 8601. Relative dates resolve against the meeting's date; without one only
dates that name a year resolve.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

from core.textutil import plain


_WD = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MON = (r"(?:january|february|(?-i:March)|april|(?-i:May)|june|july|august|september|october|november|december"
        r"|jan|feb|(?-i:Mar)|apr|jun|jul|aug|sept|sep|oct|nov|dec)\b")
_NUM = r"(?:\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|(?:a\s+)?couple\s+of)"
_PREP = r"(?P<prep>by|before|until|till|no\s+later\s+than|due|on)"
_DUE = re.compile(rf"""(?ix)\b(?:{_PREP}\s+)?(?:the\s+)?(?:
   (?P<iso>\d{{4}}-\d{{2}}-\d{{2}})
 | (?P<md_m>{_MON})\s+(?P<md_d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<md_y>\d{{4}}))?
 | (?P<dm_d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dm_m>{_MON})(?:,?\s+(?P<dm_y>\d{{4}}))?
 | end\s+of\s+(?:the\s+)?(?P<eo>(?:this\s+|next\s+)?(?:day|week|month|quarter|year)|{_MON})(?:\s+(?P<eo_y>\d{{4}}))?
 | (?P<eod>eod|cob|close\s+of\s+business)
 | (?P<rel>(?:day\s+after\s+)?tomorrow|today|tonight)
 | (?:(?P<wd_mod>this\s+coming|this|next|coming|following)\s+)?(?P<wd>{_WD})(?P<wd_nw>\s+next\s+week)?
 | (?P<p_mod>this|next|following)\s+(?P<p_u>week|month)
 | (?:in|within)\s+(?:the\s+next\s+)?(?P<in_n>{_NUM})\s+(?P<in_u>day|week|month)s?
 | (?P<mon>{_MON})(?:\s+(?P<mon_y>\d{{4}}))?
)(?![\w-])""")
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTHS["sept"] = 9
_WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}


def find_due(sentence: str, meeting_date: str | None = None) -> tuple[str, str | None] | None:
    """The words that state a deadline ("by Friday") and their ISO date, when it can be resolved.

    Relative phrases resolve against ``meeting_date``; without one only dates with a year do.
    """
    base = _parse_iso(meeting_date)
    for m in _DUE.finditer(plain(sentence)):
        g = m.groupdict()
        prep = (g["prep"] or "").lower()
        needs_prep = g["iso"] or g["md_m"] or g["dm_m"] or (g["wd"] and not g["wd_mod"] and not g["wd_nw"])
        if (needs_prep and not prep) or (g["mon"] and prep in ("", "on")):
            continue
        return sentence[m.start():m.end()], _resolve(g, prep, base)
    return None


def _parse_iso(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _resolve(g: dict, prep: str, b: date | None) -> str | None:
    try:
        d = _date(g, prep, b)
    except ValueError:  # "February 30th"
        return None
    return d.isoformat() if d else None


def _date(g: dict, prep: str, b: date | None) -> date | None:
    if g["iso"]:
        return date.fromisoformat(g["iso"])
    month = _MONTHS.get((g["md_m"] or g["dm_m"] or g["eo"] or g["mon"] or "").lower())
    year, day = g["md_y"] or g["dm_y"] or g["eo_y"] or g["mon_y"], g["md_d"] or g["dm_d"]
    if month and (year or b):
        if not year:  # the next such date on or after the meeting
            late = date(b.year, month, int(day)) < b if day else month < b.month
            year = b.year + late
        y = int(year)
        return date(y, month, int(day)) if day else _month_end(y, month) if g["eo"] else date(y, month, 1)
    if b is None:
        return None
    monday = b - timedelta(days=b.weekday())
    friday = monday + timedelta(days=4)
    if g["eo"]:
        later, unit = g["eo"].lower().startswith("next"), g["eo"].lower().split()[-1]
        if unit == "week":
            return max(b, friday) + timedelta(days=7 * later)
        if unit == "month":
            return _month_end(*_add_months(b.year, b.month, int(later)))
        if unit == "quarter":
            return _month_end(b.year, (b.month - 1) // 3 * 3 + 3)
        return date(b.year, 12, 31) if unit == "year" else b
    if g["eod"] or g["rel"]:
        rel = (g["rel"] or "today").lower()
        return b + timedelta(days=0 if rel in ("today", "tonight") else 2 if rel.startswith("day") else 1)
    if g["wd"]:
        wd, mod = _WEEKDAYS[g["wd"].lower()], (g["wd_mod"] or "").lower()
        if g["wd_nw"] or mod in ("next", "following"):  # "next Wednesday": the Wednesday of next week
            return monday + timedelta(days=7 + wd)
        if mod == "this" and wd >= b.weekday():
            return monday + timedelta(days=wd)
        return b + timedelta(days=(wd - b.weekday()) % 7 or 7)
    if g["p_u"]:
        later = g["p_mod"].lower() != "this"
        deadline = later and prep not in ("", "on")  # "by next week": as it starts; "next week": within it
        if g["p_u"].lower() == "week":
            return monday + timedelta(days=7) if deadline else max(b, friday) + timedelta(days=7 * later)
        year, month = _add_months(b.year, b.month, int(later))
        return date(year, month, 1) if deadline else _month_end(year, month)
    n = int(g["in_n"]) if g["in_n"].isdigit() else _NUMBERS.get(g["in_n"].lower(), 2)
    if g["in_u"].lower() == "month":
        year, month = _add_months(b.year, b.month, n)
        return date(year, month, min(b.day, calendar.monthrange(year, month)[1]))
    return b + timedelta(days=n * (7 if g["in_u"].lower() == "week" else 1))


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    y, m = divmod(month - 1 + n, 12)
    return year + y, m + 1


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])
