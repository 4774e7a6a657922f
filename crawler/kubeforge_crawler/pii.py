"""Personal data scrubbing: e-mail addresses and phone numbers replaced by placeholders.

The phone pattern wants a number written as one (an international prefix, a parenthesised area
code, or groups of 3-3-4 digits), so dates, versions and other digit runs are left alone.
"""

from __future__ import annotations

import re

from kubeforge.api.dataingest import PiiScrubbing

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,3}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
    r"|\d{3}[ .-]\d{3}[ .-]\d{4}"
    r")(?![\w])"
)
EMAIL_PLACEHOLDER = "<EMAIL>"
PHONE_PLACEHOLDER = "<PHONE>"


class PiiScrubber:
    """Replaces the kinds of personal data the policy names."""

    def __init__(self, policy: PiiScrubbing) -> None:
        self.policy = policy

    def __call__(self, text: str) -> str:
        if self.policy.emails and "@" in text:
            text = EMAIL.sub(EMAIL_PLACEHOLDER, text)
        if self.policy.phone_numbers:
            text = PHONE.sub(PHONE_PLACEHOLDER, text)
        return text
