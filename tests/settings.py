"""Settings for the test suite: geoshare's own, in development mode (DEBUG=1)."""

import os

os.environ.setdefault("DEBUG", "1")

from geoshare.settings import *  # noqa: E402,F403
