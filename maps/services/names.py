"""Names people type: display names, room names, labels, place and device names."""

import unicodedata

_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})


def clean_name(name, *, limit=40):
    """Return ``name`` fit to show: NFC, without invisible characters, spaces collapsed.

    Whitespace of any kind (tabs, newlines, U+2028...) becomes one space between words;
    control and format characters go; at most ``limit`` characters are kept. Raises
    ``ValueError`` when nothing is left.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char) not in _INVISIBLE
    )
    text = " ".join(text.split())[:limit].rstrip()
    if not text:
        raise ValueError("a name is required")
    return text
