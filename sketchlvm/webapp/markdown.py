"""File names and other outside text inside the page's Markdown, shown as text and nothing else.

Gradio sanitises HTML in Markdown, not Markdown itself: a gallery photo named
``[Session expired, sign in again](https:evil.example).jpg`` became a live link in the "More like"
message, and a backtick broke the status panel's code span. Gallery names come from whoever made the
folder (or a third party's ``hf://`` dataset), upload names from the uploader. The text always sits
inside a line (never at its start), so what must not act is the inline syntax: CommonMark lets a
backslash escape any ASCII punctuation, and these characters are escaped: links and images (``[]()!``),
code spans, emphasis and strikethrough (`` ` * _ ~ ``), HTML and autolinks (``<>``), tables (``|``),
LaTeX (``$``), braces, and the two bare autolinks of GFM (``www.`` and ``@``). Dots and dashes stay
as they are, so ``photo-1.jpg`` reads as itself in the API's answers too. Line breaks and other
control characters become spaces (a name cannot start a new block).
"""

from __future__ import annotations

import re
import unicodedata

from sketchlvm.webapp.safe_text import display_name

_SPECIAL = frozenset("\\`*_[]()<>~|!${}#@")
_WWW = re.compile(r"(www)\.", re.IGNORECASE)


def escape(text: object) -> str:
    """``text`` as literal Markdown text inside a line (see the module doc)."""
    out = []
    for c in display_name(str(text)):  # bytes that are not UTF-8 as U+FFFD (sketchlvm.webapp.safe_text)
        if c in _SPECIAL:
            out.append("\\" + c)
        elif unicodedata.category(c)[0] == "C" or c in "\u2028\u2029":
            out.append(" ")
        else:
            out.append(c)
    return _WWW.sub(r"\1\\.", "".join(out))
