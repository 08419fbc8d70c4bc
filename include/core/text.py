"""How a name from outside (a local path, an S3 key, a job row, a deployment name) is shown to a person.

Names are anyone's who can write a file, an object or a row: a line end, a terminal escape or a
right-to-left override in one could forge a log line, hide a key from an approver or make two names look
the same. Every report, log line and approval text shows them through :func:`shown`. Python's own
``repr``/``ascii`` escape every non-ASCII letter (``café`` as ``caf\\xe9``) and do not tell an undecodable
byte from a character, so this small rule is written here once.
"""

from __future__ import annotations

import unicodedata
from typing import Any

# How shown() writes the characters it escapes without a code: the backslash itself too, so that an
# escape in its output can never be confused with a name that holds a backslash.
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_COMBINING = ("Mn", "Me")
# Letters and symbols that print as nothing: the Hangul fillers (a name of U+3164 alone looks empty and
# U+3164 between two words looks like a space), the blank Braille cell, the musical null notehead
# (U+1D159, a symbol fonts draw as nothing), and U+FFFD (which would pass for a byte shown badly rather
# than a character the name really holds). Unicode's other blank characters are format or separator
# characters, which are not printable and are escaped already (every Default_Ignorable_Code_Point and
# White_Space character but the ASCII space is escaped: tests/unit/test_upload_layout_hostile.py).
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\U0001d159\ufffd")


def shown(value: Any) -> str:
    """``value`` as one printable line that says exactly what it holds.

    A byte that is not UTF-8 (kept by ``os.fsdecode`` as a surrogate, U+DC80–U+DCFF) is shown as ``\\xe9``;
    a character that is not printable (control, format such as a bidi override or a zero-width space, line
    or paragraph separator, …) or a combining mark (so NFD ``é``, as macOS names files, shows as
    ``e\\u0301`` and never looks like NFC ``é``; so does a letter or spacing mark NFC would join to the one
    before it: NFD ``한`` shows as ``ᄒ\\u1161ᆫ``) or a letter that prints blank (the Hangul filler U+3164,
    U+2800, U+1D159, U+FFFD) as ``\\n``, ``\\r``, ``\\t`` or its code point (``\\u0085``,
    ``\\u2028``, ``\\U000e0001``); a backslash as ``\\\\``. So ``\\xNN`` always means a raw byte and
    ``\\uNNNN`` a character. Printable letters of any script (``é``, ``日本``, ``שלום``) and spaces are shown as
    they are: right-to-left letters included, since escaping them would make a Hebrew or Arabic name
    unreadable to the people it belongs to, and the overrides that could reorder a line are escaped.
    """
    text = str(value)
    if text.isprintable() and "\\" not in text and (
            text.isascii() or not _has_hidden(text) and unicodedata.is_normalized("NFC", text)):
        return text  # nearly every name: C-speed checks, nothing to escape
    return "".join(_code_point(ch) if _joins(before, ch) else _shown_char(ch)
                   for before, ch in zip(("", *text), text, strict=False))


def _joins(before: str, ch: str) -> bool:
    """Does NFC join ``ch`` to the character ``before`` it? (An NFD Hangul vowel to its initial consonant, a
    final consonant to a composed syllable, the second part of a Tamil or Bengali two-part vowel: letters
    and spacing marks, not combining ones, that look the same decomposed as composed.)"""
    return (not ch.isascii() and before != "" and ch.isprintable()
            and unicodedata.normalize("NFC", before + ch) != unicodedata.normalize("NFC", before) + ch)


def _has_hidden(text: str) -> bool:
    return any(ch in _BLANK or unicodedata.category(ch) in _COMBINING for ch in text)


def _shown_char(ch: str) -> str:
    """One character of :func:`shown`."""
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if ch.isprintable() and ch not in _BLANK and unicodedata.category(ch) not in _COMBINING:
        return ch
    return _code_point(ch)


def _code_point(ch: str) -> str:
    """``ch`` escaped: ``\\xNN`` for a byte kept by ``os.fsdecode``, else its code point."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape: the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
