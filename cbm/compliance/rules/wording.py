"""Wording shared by the rules' sentences.

A duration in a finding's sentence is never rounded onto the limit it is compared with: a
reply 24 h 1 min after a request reads "24 hours 1 minute", not "24.0 hours", and a
notification 71 h 59 min before an ETA reads "71 hours 59 minutes", not "72.0 hours".
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def duration(value: Any, unit: str = "hours") -> str:
    """A timedelta (or a number of ``unit``) in words, to the second, largest unit first.

    ``unit`` is the largest unit used: ``"hours"`` (36 hours 30 minutes) or ``"days"``
    (14 days 2 hours). Zero parts after the first are left out.
    """
    if not isinstance(value, pd.Timedelta):
        value = pd.Timedelta(**{unit: float(value)})
    seconds = round(value.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if unit == "days":
        days, seconds = divmod(seconds, 86400)
        hours, seconds = divmod(seconds, 3600)
        parts = [(days, "day"), (hours, "hour")]
    else:
        hours, seconds = divmod(seconds, 3600)
        parts = [(hours, "hour")]
    minutes, seconds = divmod(seconds, 60)
    parts += [(minutes, "minute"), (seconds, "second")]
    words = [_plural(n, w) for i, (n, w) in enumerate(parts) if n or i == 0]
    return sign + " ".join(words)
