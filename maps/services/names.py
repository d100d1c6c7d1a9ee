"""Names people type: display names, room names, labels, place and device names."""

import unicodedata

# Control (Cc) and format (Cf) characters: among them the bidi embeddings, overrides
# and isolates (U+202A-U+202E, U+2066-U+2069) and marks (U+200E, U+200F, U+061C), which
# reverse the text around a name on the others' pages, and the zero-width characters
# (U+200B-U+200D, U+FEFF), which make two names look alike. Lone surrogates (Cs) cannot
# even be encoded as UTF-8.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})


def clean_name(name: str, *, limit: int = 40) -> str:
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
