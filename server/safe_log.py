"""Client-supplied text in status messages and log lines, and how often the server may log.

Everything a client sends (device and clip ids, codec specs, labels) is shown through
``shown``: quoted, with control and non-ASCII characters escaped and cut to a bounded length,
so a device id cannot forge a log line (a newline and ``CRITICAL ...``) and a 1 MB clip id
cannot turn into a 1 MB status message, which would exceed gRPC's 8 KB metadata limit and reach
the client as RESOURCE_EXHAUSTED instead of the real error. ``status_message`` caps a whole
message at ``MAX_STATUS_BYTES``.

``LogLimiter`` keeps a flood of failing streams from flooding the log: per kind of event, a
burst is logged, then the rest of the interval is only counted and reported in one line.
``EscapingFilter`` is the last line of defence on the server's log handler: whatever reaches it
is put on one line.
"""

from __future__ import annotations

import logging
import time

MAX_STATUS_BYTES = 1000  # every status message the server sends stays under 1 KB
SHOWN_CHARS = 64  # an echoed value is cut to this many characters (escapes counted)
MAX_LOG_CHARS = 2000  # one log line, its traceback aside


def shown(value: str | bytes, limit: int = SHOWN_CHARS) -> str:
    """``value`` quoted and escaped like ``ascii()``, cut to ``limit`` characters.

    Escaping happens before cutting, so the result is at most ``limit`` characters plus the
    note of the original length, whatever the value holds.
    """
    text = ascii(value[: limit + 1])  # no need to escape more than can be shown
    if len(value) <= limit and len(text) <= limit + 3:  # quotes (and b) not counted
        return text
    size = len(value)
    unit = "bytes" if isinstance(value, bytes) else "characters"
    return f"{text[: max(8, limit)]}... ({size} {unit})"


def status_message(message: str) -> str:
    """A status message cut to ``MAX_STATUS_BYTES`` of UTF-8 (it travels in HTTP/2 trailers)."""
    data = message.encode("utf-8", "backslashreplace")
    if len(data) <= MAX_STATUS_BYTES:
        return message
    return data[: MAX_STATUS_BYTES - 20].decode("utf-8", "ignore") + " ... (message cut)"


def one_line(text: str, limit: int = MAX_LOG_CHARS) -> str:
    """Control characters escaped (no line breaks, no terminal escapes), length bounded."""
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif ch in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    line = "".join(out)
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} characters)"


class EscapingFilter(logging.Filter):
    """Puts every record's message on one bounded line (tracebacks are formatted apart)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = one_line(message), None
        return True


class LogLimiter:
    """At most ``burst`` log lines per kind of event in each ``interval`` seconds.

    ``allow(kind)`` says whether to log this one; when an interval that suppressed some ends,
    the next allowed line is preceded by one saying how many were left out.
    """

    MAX_KINDS = 1000  # kinds are a bounded set (status codes, event names), never client text

    def __init__(self, burst: int = 10, interval: float = 60.0, clock=time.monotonic):
        self.burst, self.interval, self.clock = burst, interval, clock
        self._windows: dict[str, list] = {}  # kind -> [window start, logged, suppressed]

    def allow(self, kind: str, logger: logging.Logger | None = None) -> bool:
        now = self.clock()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.interval:
            if window is not None and window[2] and logger is not None:
                logger.warning(
                    "%d more %s event(s) in the last %.0f s were not logged",
                    window[2],
                    kind,
                    now - window[0],
                )
            if len(self._windows) >= self.MAX_KINDS:
                self._windows.clear()
            window = self._windows[kind] = [now, 0, 0]
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False
