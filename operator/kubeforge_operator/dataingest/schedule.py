"""Cron arithmetic for a DataIngest's `spec.schedule`: when it fires next, and when it last fired.

Pure, in UTC, over croniter (the API validated the expression with it). `status.decide`
starts a scheduled run with these and asks to be woken when the next one falls due.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterBadDateError, croniter


def next_time(schedule: str, after: datetime) -> datetime | None:
    """The first time the schedule fires after `after`; None when it never does (0 0 31 2 *)."""
    try:
        return croniter(schedule, after.astimezone(UTC)).get_next(datetime)
    except CroniterBadDateError:
        return None


def latest_time(schedule: str, due: datetime, now: datetime) -> datetime:
    """The latest time the schedule fired at or before `now`, given that it fired at `due`.

    Several missed times make one run, recorded as due at the latest of them (as a CronJob does).
    """
    before = croniter(schedule, now.astimezone(UTC)).get_prev(datetime)
    following = next_time(schedule, before)
    latest = following if following is not None and following <= now else before
    return max(due, latest)
