"""geoshare settings.

One module; production differs only by environment variables. Every variable has an
embedded default that runs on a bare machine: SQLite and the in-memory channel layer.
"""

import os
import secrets
import sys
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default):
    """Return the environment variable ``name``, or ``default`` when unset or empty."""
    return os.environ.get(name) or default


def env_bool(name, default):
    """Return ``True`` for 1/true/yes/on, ``False`` for 0/false/no/off (any case).

    ``default`` when the variable is unset or empty. Anything else raises
    ``ImproperlyConfigured`` naming the variable and its value: a typo such as
    ``DEBUG=flase`` must stop the start, not quietly mean the default.
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use 1, true, yes, on or 0, false, no, off"
    )


def env_int(name, default):
    """Return the environment variable ``name`` as a decimal int.

    ``default`` when unset or empty; a value that is not an integer raises
    ``ImproperlyConfigured`` naming the variable and its value.
    """
    raw = os.environ.get(name, "")
    value = raw.strip()
    if not value:
        return default
    try:
        return int(value, 10)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_list(name, default):
    """Return a comma-separated environment variable as a list of stripped strings."""
    value = os.environ.get(name, "").strip()
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


DEBUG = env_bool("DEBUG", default=False)

# Files geoshare writes for itself (the SQLite database, a generated SECRET_KEY).
DATA_DIR = Path(env_str("GEOSHARE_DATA_DIR", str(BASE_DIR / "data")))


def generated_secret_key(data_dir):
    """Return the key in ``data_dir/secret_key``, made once (mode 0600) if missing.

    So that ``manage.py`` works from a plain shell on a fresh machine with DEBUG off;
    a line on stderr says when a key is generated. ``SECRET_KEY`` in the environment
    always wins.
    """
    path = Path(data_dir) / "secret_key"
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    sys.stderr.write(f"geoshare: SECRET_KEY is not set; generated one into {path} "
                     "(mode 0600) and using it\n")
    return key


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if DEBUG:
        # A development key only: `make run` and the tests run with DEBUG=1.
        SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
    else:
        SECRET_KEY = generated_secret_key(DATA_DIR)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if "*" in ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured(
        'ALLOWED_HOSTS = ["*"] is refused in production: list the host names'
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # SimpleAdminConfig: django-leaflet's own admin module needs GDAL, which geoshare
    # does not; maps registers its models itself (maps.apps).
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "leaflet",
    "maps",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy and Permissions-Policy on every HTML page.
    "maps.web.middleware.SecurityHeadersMiddleware",
    # Static files from the same process: `make run` is the whole deployment for many.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page's language from the browser's Accept-Language (English, Simplified Chinese).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "geoshare.urls"
CSRF_FAILURE_VIEW = "maps.web.error_views.csrf_failure"
ASGI_APPLICATION = "geoshare.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'geoshare.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", default=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the map pages read while the history writer appends.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# Channel layer, cache and limiter (maps.access.limits) keys all start with it.
REDIS_PREFIX = env_str("REDIS_PREFIX", "geoshare")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_keepalive": True,
                        "health_check_interval": 10,
                    }
                ],
                "prefix": REDIS_PREFIX,
            },
        }
    }
else:
    # One process only. Each room hub reads one channel carrying every update of its
    # room, so the capacity is far above the default 100 (which drops silently).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "maps.realtime.layers.RoomsInMemoryChannelLayer",
            "CONFIG": {"capacity": 100_000},
        }
    }

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where `collectstatic` gathers the files a proxy (or WhiteNoise) serves under /static/.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders too, so tests need no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# WhiteNoise streams files with a sync iterator; under ASGI Django says so once per file.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators"
)
# Before `collectstatic` (tests, `make test`) there is no STATIC_ROOT; the finders serve.
warnings.filterwarnings("ignore", message="No directory at: .*staticfiles")

# Cookies: the session is the browser member's credential.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_AGE = 60 * 60 * 24 * 365
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    # Production runs behind a TLS proxy that sets X-Forwarded-Proto (docs/security.md).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    # Probes from a container engine or a proxy's health check speak plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "maps.telemetry.logging.RedactSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own loggers are named here so that their DEFAULT_LOGGING handlers
        # (a console one under DEBUG, mail_admins, runserver's) go: request lines name
        # /w/<token>/ and /signin/<token>/, and those handlers do not redact. Their
        # records (django.request's too) reach the root's redacting console instead.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "uvicorn.access": {
            "handlers": ["console"],
            "filters": ["redact"],
            "propagate": False,
        },
        "uvicorn.error": {
            "handlers": ["console"],
            "filters": ["redact"],
            "propagate": False,
        },
    },
}

LEAFLET_CONFIG = {
    "TILES": [],
    "NO_GLOBALS": False,
}

# geoshare's own settings.
GEOSHARE = {
    # Length of a room's fan-out tick: positions arriving within one tick are
    # coalesced (latest per member wins) into one frame.
    "TICK_MS": env_int("GEOSHARE_TICK_MS", default=100),
    # A sharing member who sent nothing for this long is shown as stale.
    "STALE_AFTER_MS": env_int("GEOSHARE_STALE_AFTER_MS", default=120_000),
    # How much trail the map draws behind each marker.
    "TRAIL_MS": env_int("GEOSHARE_TRAIL_MS", default=600_000),
    "TILE_URL": env_str(
        "GEOSHARE_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    ),
    "TILE_ATTRIBUTION": env_str(
        "GEOSHARE_TILE_ATTRIBUTION",
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>'
        " contributors",
    ),
    # History is written in batches at most this far apart.
    "HISTORY_FLUSH_MS": env_int("GEOSHARE_HISTORY_FLUSH_MS", default=1000),
    # The history writer's thread runs at this niceness (0-19; 0: the process's own),
    # so that the event loop has the core first (Linux; maps.storage.dbthread).
    "HISTORY_NICE": env_int("GEOSHARE_HISTORY_NICE", default=10),
    # Presence heartbeat between processes (and channel-layer re-subscription).
    "HEARTBEAT_MS": env_int("GEOSHARE_HEARTBEAT_MS", default=5000),
    # Frames queued for one socket before it is treated as too slow and resynced.
    "MAX_PENDING_FRAMES": env_int("GEOSHARE_MAX_PENDING_FRAMES", default=50),
    # A socket sending more than FLOOD_PER_S frames of any kind in one second is
    # closed (4429).
    "FLOOD_PER_S": env_int("GEOSHARE_FLOOD_PER_S", default=200),
    # Open sockets per member, and per client address, in one process (0: no limit).
    "MAX_SOCKETS_PER_MEMBER": env_int("GEOSHARE_MAX_SOCKETS_PER_MEMBER", default=10),
    "MAX_SOCKETS_PER_ADDRESS": env_int("GEOSHARE_MAX_SOCKETS_PER_ADDRESS", default=1000),
    # (events, window seconds) before 429: invite redemptions and wrong device keys per
    # client address; positions per member, all doors together.
    "RATE_LIMITS": {
        "redeem": (env_int("GEOSHARE_REDEEM_PER_MIN", default=20), 60),
        "badkey": (env_int("GEOSHARE_BADKEY_PER_MIN", default=20), 60),
        "positions": (env_int("GEOSHARE_POSITIONS_PER_MIN", default=1200), 60),
        # Rooms created on the home page.
        "room": (env_int("GEOSHARE_ROOMS_PER_HOUR", default=10), 3600),
        # Sign-in attempts on /admin/login/ (maps.web.admin_views).
        "admin_login": (env_int("GEOSHARE_ADMIN_LOGINS_PER_HOUR", default=20), 3600),
    },
    # Exports (GPX, GeoJSON, "download my data"): positions in one export at most (413
    # past it), and exports streaming at once per member and per process (429).
    "EXPORT_MAX_POINTS": env_int("GEOSHARE_EXPORT_MAX_POINTS", default=1_000_000),
    "EXPORTS_PER_MEMBER": env_int("GEOSHARE_EXPORTS_PER_MEMBER", default=1),
    "EXPORTS_PER_PROCESS": env_int("GEOSHARE_EXPORTS_PER_PROCESS", default=4),
    # Addresses or CIDR networks of reverse proxies whose X-Forwarded-For is believed
    # (maps.access.address.client_address); none by default.
    "TRUSTED_PROXIES": env_list("GEOSHARE_TRUSTED_PROXIES", default=[]),
    # How often the service deletes positions past their room's retention.
    "PRUNE_EVERY_S": env_int("GEOSHARE_PRUNE_EVERY_S", default=300),
    # The demo walker (maps/ops/demo.py): walks the demo room of `manage.py demo`, if any.
    "DEMO_WALKER": env_bool("GEOSHARE_DEMO_WALKER", default=True),
    "DEMO_STEP_MS": env_int("GEOSHARE_DEMO_STEP_MS", default=2000),
    # Usable (not revoked, expired or used up) invites a room may hold at once.
    "MAX_INVITES_PER_ROOM": env_int("GEOSHARE_MAX_INVITES_PER_ROOM", default=50),
    "DEFAULT_RETENTION_DAYS": env_int("GEOSHARE_RETENTION_DAYS", default=7),
    # Prometheus metrics (maps.telemetry.metrics): on /metrics with "Authorization: Bearer
    # <token>", and/or on a port of their own (0: none) bound to METRICS_ADDR. With
    # neither, /metrics answers 404.
    "METRICS_TOKEN": env_str("GEOSHARE_METRICS_TOKEN", ""),
    "METRICS_PORT": env_int("GEOSHARE_METRICS_PORT", default=0),
    "METRICS_ADDR": env_str("GEOSHARE_METRICS_ADDR", "127.0.0.1"),
    # How long a process trusts a device key it looked up without hearing of a change
    # in the key's room (maps/access/keycache.py): the longest a revoked key can keep working
    # on a process that missed the channel-layer message.
    "KEY_CACHE_S": env_int("GEOSHARE_KEY_CACHE_S", default=10),
    # An OwnTracks device gets the room's members as friends in the answer to a post at
    # most this often (seconds; 0: every post); the posts in between are answered
    # without them (maps/ingest/friends.py).
    "OWNTRACKS_FRIENDS_EVERY_S": env_int("GEOSHARE_OWNTRACKS_FRIENDS_EVERY_S", default=10),
    # Phone doors (/ingest/, /hauk/api/) served by their own ASGI front instead of
    # Django's request handler and middleware (maps/ingest/front.py); 0 for the latter.
    "INGEST_FRONT": env_bool("GEOSHARE_INGEST_FRONT", default=True),
    # 1: under uvicorn's wsproto without compression, an idle socket gets the tick's
    # frame bytes, built once, written straight to its transport (maps.realtime.outbox
    # DirectWrite, which reads uvicorn's private state). Off by default: it saved less
    # than 10 % of server CPU or p99 in S1 (docs/benchmarks.md, issue 24), so every frame
    # goes through uvicorn's ASGI send. Read as each socket opens.
    "DIRECT_WRITE": env_bool("GEOSHARE_DIRECT_WRITE", default=True),
    # Where `make run` serves, for links printed by commands.
    "PUBLIC_URL": env_str("GEOSHARE_PUBLIC_URL", "http://127.0.0.1:8000"),
}
