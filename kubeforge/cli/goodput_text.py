"""Goodput in words, for `kubeforge status` and the local report."""

from __future__ import annotations

from kubeforge.api.trainingjob import GoodputStatus


def duration(seconds: float) -> str:
    """`1h 02m`, `3m 05s` or `42 s`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs} s"


def summary(goodput: GoodputStatus | None) -> str:
    """One line: the ratio and where the rest of the wall time went."""
    if goodput is None or goodput.ratio is None:
        return "goodput: -"
    return (
        f"goodput {goodput.ratio:.1%}: {duration(goodput.productive_seconds)} productive of "
        f"{duration(goodput.wall_seconds)}; startup {duration(goodput.startup_seconds)}, "
        f"lost to restarts {duration(goodput.lost_seconds)}"
    )


def restart_lines(goodput: GoodputStatus | None) -> list[str]:
    """One line per attempt: what the restart that began it cost, and its time to first step."""
    if goodput is None:
        return []
    lines = []
    for index, attempt in enumerate(goodput.attempts):
        began = f"{attempt.began_at:%Y-%m-%d %H:%M:%S}"
        first = (
            f"first step after {duration(attempt.time_to_first_step_seconds)}"
            if attempt.time_to_first_step_seconds is not None
            else "no step yet"
            if index == len(goodput.attempts) - 1
            else "no step"
        )
        if index == 0:
            lines.append(f"attempt 1 began {began}: {first}")
            continue
        cost = (
            "under way"
            if attempt.lost_seconds is None
            else f"lost {duration(attempt.lost_seconds)}"
        )
        rework = (
            f" (of which {duration(attempt.rework_seconds)} training redone)"
            if attempt.rework_seconds
            else ""
        )
        lines.append(f"restart at {began}: {first}; {cost}{rework}")
    return lines
