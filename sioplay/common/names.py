"""What a name people read may contain: room names, user names and ids, one rule for all.

A name is compared as people see it, so it is NFC-normalised first: a decomposed
``"Mathe\\u0301"`` and a composed ``"Mathé"`` are one room. Characters that change
how the rest of a name looks without being seen themselves (bidi overrides,
zero-width characters, the BOM), control characters, private-use and
unassigned code points, lone surrogates and line or paragraph separators are
refused, each named by its code point, so that no two names that read the same
are different names.
"""

from __future__ import annotations

import unicodedata

from sioplay.errors import ValidationError

__all__ = ["FORBIDDEN_CATEGORIES", "normalized"]

# Unicode general categories refused in names, with the words a refusal uses for them.
FORBIDDEN_CATEGORIES: dict[str, str] = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Cs": "a lone surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def normalized(text: str, refusal: str) -> str:
    """`text` in NFC, or ValidationError: `refusal` ("room name contains"), the first forbidden character, its kind."""
    for char in text:
        kind = FORBIDDEN_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            raise ValidationError(f"{refusal} U+{ord(char):04X} ({kind})")
    return unicodedata.normalize("NFC", text)
