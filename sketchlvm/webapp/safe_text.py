"""Text from outside (file names, words, paths) made safe to show and to log.

A gallery photo whose file name is not valid UTF-8 reaches Python as a string with lone surrogates
(``os.fsdecode``): JSON refuses to encode it, so any page answer that included it failed and the browser
showed "Error". :func:`display_name` shows such a name with U+FFFD (the replacement character) in place of
the bytes it cannot decode; the photo itself is still found by its real name (the index keeps it).

A name with a line break in it (Linux allows any byte but ``/`` and NUL) wrote a second, forged line into
the server's log. :class:`SafeLogFormatter` escapes control characters in every log message, so one
record is one line, whatever a file name or query holds.
"""

from __future__ import annotations

import logging
import re

REPLACEMENT = "\ufffd"
# C0 and C1 control characters and the Unicode line and paragraph separators; tab is kept.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def display_name(text: str) -> str:
    """``text`` with every undecodable byte (a lone surrogate from ``os.fsdecode``) as U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode(
        "utf-8", "replace").decode("utf-8")


def log_safe(text: object) -> str:
    """``text`` as one printable log line: control characters as ``\\xNN``, undecodable bytes as U+FFFD."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        display_name(str(text)))


class SafeLogFormatter(logging.Formatter):
    """A formatter whose messages cannot start a new line: the message (with its arguments filled in) is
    escaped; a traceback, which the logging module adds after it, keeps its own line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = log_safe(record.message)
        return super().formatMessage(record)


def install_safe_logging() -> None:
    """Every handler of the root logger formats with :class:`SafeLogFormatter` (its format kept)."""
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        handler.setFormatter(SafeLogFormatter(current._fmt if current else None,
                                              current.datefmt if current else None))


PAGE_BYTES_PREFIX = "fsname:"  # a hidden page value naming a file whose name is not valid UTF-8


def to_page(relpath: str) -> str:
    """A gallery path as a value the page can hold and send back (JSON: valid UTF-8 only): itself, or for
    a name that is not valid UTF-8 its bytes, hex-encoded behind ``PAGE_BYTES_PREFIX``."""
    try:
        relpath.encode("utf-8")
        return relpath
    except UnicodeEncodeError:
        return PAGE_BYTES_PREFIX + relpath.encode("utf-8", "surrogateescape").hex()


def from_page(value: str | None) -> str | None:
    """The gallery path a page value (``to_page``) names."""
    if isinstance(value, str) and value.startswith(PAGE_BYTES_PREFIX):
        try:
            return bytes.fromhex(value[len(PAGE_BYTES_PREFIX):]).decode("utf-8", "surrogateescape")
        except ValueError:
            return None
    return value
