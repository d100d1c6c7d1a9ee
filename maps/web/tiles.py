"""The map tiles' settings as the pages give them to Leaflet."""

import re

from django.conf import settings
from django.utils.translation import gettext

_CONTRIBUTORS = re.compile(r"\bcontributors\b")


def tile_attribution() -> str:
    """Return ``GEOSHARE_TILE_ATTRIBUTION`` (HTML, the operator's) for the current language.

    The word "contributors" of the default OpenStreetMap credit is translated
    ("© OpenStreetMap 贡献者"); the rest is shown as the operator wrote it.
    """
    value: str = settings.GEOSHARE["TILE_ATTRIBUTION"]
    return _CONTRIBUTORS.sub(gettext("contributors"), value)
