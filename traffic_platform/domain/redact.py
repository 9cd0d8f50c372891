"""Secrets never reach a message, an answer or a log line.

:func:`redact` masks the password of every ``scheme://user:password@host`` URL in a text
(``mysql+pymysql://app:***@db:3306/traffic``). Configuration errors, database errors,
readiness answers and both log formatters pass their text through it.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ — the password runs to the last "@" before the host part.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*:)(?P<pw>[^\s'\"]*)@(?=[^@\s'\"]*(?:[/\s'\"?#]|$))")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
