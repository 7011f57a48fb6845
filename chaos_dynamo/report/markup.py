"""Text for markup: what JUnit XML and the HTML report may carry of a journal's text.

A journal holds whatever an activity printed or raised, control characters included; XML
1.0 forbids most of them (a NUL makes the file unreadable to every parser) and HTML forbids
the C0 and C1 controls and DEL in text. :func:`xml_text` replaces each such character with a
visible escape (``\\x00``), so a report stays well-formed and still shows that it was there;
:func:`escape` does that, then escapes ``&<>"'`` for HTML (and SVG inside it).
"""

from __future__ import annotations

import html
import re

__all__ = ["escape", "xml_text"]

_FORBIDDEN = re.compile("[^\u0009\u000a\u000d\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Every character outside XML 1.0's ``Char`` production, and the controls HTML forbids in
text as well (DEL and C1, which XML allows)."""


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 or HTML forbids replaced by a visible escape."""
    return _FORBIDDEN.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                          else f"\\u{ord(m.group()):04x}", text)


def escape(text: str) -> str:
    """``text`` for HTML text or an attribute value: :func:`xml_text`, then ``html.escape``."""
    return html.escape(xml_text(text))
