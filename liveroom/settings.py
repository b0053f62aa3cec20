"""Settings for liveroom, read from the environment with embedded defaults.

With nothing set, the app runs on a SQLite file and the in-memory channel layer (one process).
DATABASE_URL and REDIS_URL switch it to PostgreSQL and channels-redis.
"""

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_number[N: (int, float)](name: str, default: N) -> N:
    """A number from the environment, of the default's type (int or float)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return type(default)(value)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise ImproperlyConfigured(f"{name} must be {kind}, got {value!r}.") from None


def env_rate(name: str, default: str) -> tuple[int, int]:
    """A rate written "count/seconds", e.g. "10/60" for ten per minute."""
    value = os.environ.get(name) or default
    count, _, seconds = value.partition("/")
    if not (count.isdigit() and seconds.isdigit() and int(seconds) > 0):
        raise ImproperlyConfigured(f'{name} must look like "10/60" (count/seconds), got {value!r}.')
    return int(count), int(seconds)


DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "django-insecure-local-development-only"
# Without DEBUG, a missing SECRET_KEY stops the server at start-up (liveroom/asgi.py); commands
# that need no secret, such as makemigrations, still run.
SECRET_KEY_MISSING = not SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # intcomma: counts in the language's grouping (50,001; 50.001)
    "channels",
    "django_htmx",
    "liveroom",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the one chosen with the language form (a cookie), else the browser's.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "liveroom.rooms.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "liveroom.urls"
ASGI_APPLICATION = "liveroom.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL through DATABASE_URL, otherwise a SQLite file.
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers work while one writer commits; IMMEDIATE takes the write lock at
        # BEGIN, so concurrent joins queue for it instead of failing with "database is locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # Tests too get a file (one a test process, removed after), not Django's in-memory
    # database: that one shares a cache between threads, where a write meeting another
    # thread's read fails at once with "database table is locked" instead of waiting.
    DATABASES["default"]["TEST"] = {
        "NAME": Path(tempfile.gettempdir()) / f"liveroom-test-{os.getpid()}.sqlite3"
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    from psycopg_pool import ConnectionPool

    # Under ASGI every request may run on a new thread, so persistent per-thread connections
    # would pile up; a pool shares a few connections and checks them before handing them out.
    DATABASES["default"]["OPTIONS"] = {
        "connect_timeout": 3,
        "pool": {
            "min_size": 2,
            "max_size": env_number("DATABASE_POOL_SIZE", 10),
            # How long a request waits for a connection before the 503 page; bounded even
            # when the database is down.
            "timeout": env_number("DATABASE_POOL_TIMEOUT", 5.0),
            "check": ConnectionPool.check_connection,
        },
    }

# Channel layer: Redis pub/sub when REDIS_URL is set, otherwise in-memory (one process only).
REDIS_URL = os.environ.get("REDIS_URL", "")
# Prefix of every Redis key and channel of this deployment (layer, cache, presence).
LIVEROOM_KEY_PREFIX = os.environ.get("LIVEROOM_CHANNEL_PREFIX", "liveroom")
REDIS_HOST_OPTIONS = {
    "address": REDIS_URL,
    "max_connections": env_number("REDIS_MAX_CONNECTIONS", 2000),
    # A Redis that stops answering fails calls instead of hanging them.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
# Pub/sub publishes each room change once, whatever the number of sockets, and has no
# per-channel capacity that silently drops group messages (docs/architecture.md).
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_HOST_OPTIONS],
                # Lets several deployments (or test runs) share one Redis without crosstalk.
                "prefix": LIVEROOM_KEY_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # Past its capacity a page's queue drops group messages; a burst of changes must fit.
            "CONFIG": {"capacity": 10_000},
        }
    }

# The cache holds rate-limit counters, so it must be shared by every server process.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": LIVEROOM_KEY_PREFIX,
            "OPTIONS": {
                "pool_class": "liveroom.rooms.cache.SharedConnectionPool",
                "socket_connect_timeout": 0.5,
                "socket_timeout": 0.5,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Joins and leaves allowed per window, per session and per client address.
RATE_LIMIT_PER_SESSION = env_rate("RATE_LIMIT_PER_SESSION", "10/60")
RATE_LIMIT_PER_ADDRESS = env_rate("RATE_LIMIT_PER_ADDRESS", "60/60")
# Failed admin sign-ins allowed per account and per client address; past them, 429.
ADMIN_LOGIN_LIMIT_PER_ACCOUNT = env_rate("ADMIN_LOGIN_LIMIT_PER_ACCOUNT", "10/60")
ADMIN_LOGIN_LIMIT_PER_ADDRESS = env_rate("ADMIN_LOGIN_LIMIT_PER_ADDRESS", "10/60")

# Seconds a view waits for the channel layer before giving up on a broadcast.
LIVEROOM_BROADCAST_TIMEOUT = env_number("LIVEROOM_BROADCAST_TIMEOUT", 2.0)
# Seconds between connection-indicator refreshes; 0 turns them off. The page shows
# "reconnecting…" after 15 s without one (static/liveroom/liveroom.css): keep this at most 5.
LIVEROOM_HEARTBEAT_SECONDS = env_number("LIVEROOM_HEARTBEAT_SECONDS", 5.0)
# Rooms whose rendered member list a process keeps for page loads and snapshots (least recently
# used first out; a room also goes when the process's last page of it closes).
LIVEROOM_CACHED_ROOMS = env_number("LIVEROOM_CACHED_ROOMS", 256)
# Threads a process reads the database with for its room pages (snapshots); at most this many
# run at once, and none waits behind the threads that serve HTTP requests.
LIVEROOM_READ_THREADS = env_number("LIVEROOM_READ_THREADS", 4)
# Sockets one member (session) and one client address may hold open in a process; over either
# the socket is closed with 1008. Behind a proxy, run daphne with --proxy-headers.
LIVEROOM_SOCKETS_PER_MEMBER = env_number("LIVEROOM_SOCKETS_PER_MEMBER", 50)
LIVEROOM_SOCKETS_PER_ADDRESS = env_number("LIVEROOM_SOCKETS_PER_ADDRESS", 1000)
# Seconds after its last change that a room nobody is in is deleted (its row and presence
# keys); 0 keeps empty rooms.
LIVEROOM_EMPTY_ROOM_SECONDS = env_number("LIVEROOM_EMPTY_ROOM_SECONDS", 3600.0)
if LIVEROOM_EMPTY_ROOM_SECONDS < 0:
    raise ImproperlyConfigured("LIVEROOM_EMPTY_ROOM_SECONDS must be 0 or more.")
# Crowded rooms (docs/crowds.md): a room of up to this many members lists them all on every page;
# above it, a page shows the count, the member themself, the most recent arrivals (the last
# LIVEROOM_RECENT_ARRIVALS, the same on every page) and a search by name.
LIVEROOM_FULL_LIST_MAX = env_number("LIVEROOM_FULL_LIST_MAX", 200)
LIVEROOM_RECENT_ARRIVALS = env_number("LIVEROOM_RECENT_ARRIVALS", 20)
# Rooms on each page of /rooms/ (busiest first; the first page is the live one).
LIVEROOM_ROOMS_PAGE_SIZE = env_number("LIVEROOM_ROOMS_PAGE_SIZE", 50)
# Seconds between two renders of the live /rooms/ list by one process, however many changes.
LIVEROOM_ROOMS_REFRESH_SECONDS = env_number("LIVEROOM_ROOMS_REFRESH_SECONDS", 1.0)
# Seconds /readyz gives the database and Redis to answer before it says 503.
LIVEROOM_READY_TIMEOUT = env_number("LIVEROOM_READY_TIMEOUT", 1.0)
# Seconds between each process's checks that its pages are up to date and Redis is the same.
LIVEROOM_WATCH_INTERVAL = env_number("LIVEROOM_WATCH_INTERVAL", 1.0)

# Presence: a member is online while one of their pages is open on any server process, away
# otherwise (liveroom/presence/). Off, pages show membership only.
LIVEROOM_PRESENCE = env_bool("LIVEROOM_PRESENCE", default=True)
# Seconds between a member's last page closing and their showing as away: a reload is no visit.
LIVEROOM_PRESENCE_GRACE_SECONDS = env_number("LIVEROOM_PRESENCE_GRACE_SECONDS", 10.0)
# Seconds within which the members of a server process that died show as away.
LIVEROOM_PRESENCE_EXPIRY_SECONDS = env_number("LIVEROOM_PRESENCE_EXPIRY_SECONDS", 60.0)
# Members away for longer than this many seconds are removed as if they had left; 0 is off.
LIVEROOM_IDLE_REMOVAL_SECONDS = env_number("LIVEROOM_IDLE_REMOVAL_SECONDS", 0.0)
for name in (
    "LIVEROOM_PRESENCE_GRACE_SECONDS",
    "LIVEROOM_IDLE_REMOVAL_SECONDS",
    "LIVEROOM_ROOMS_REFRESH_SECONDS",
):
    if globals()[name] < 0:
        raise ImproperlyConfigured(f"{name} must be 0 or more, got {globals()[name]}.")
if LIVEROOM_IDLE_REMOVAL_SECONDS and not LIVEROOM_PRESENCE:
    raise ImproperlyConfigured("LIVEROOM_IDLE_REMOVAL_SECONDS needs LIVEROOM_PRESENCE on.")
for name in (
    "LIVEROOM_CACHED_ROOMS",
    "LIVEROOM_READ_THREADS",
    "LIVEROOM_SOCKETS_PER_MEMBER",
    "LIVEROOM_SOCKETS_PER_ADDRESS",
    "LIVEROOM_ROOMS_PAGE_SIZE",
    "LIVEROOM_FULL_LIST_MAX",
    "LIVEROOM_RECENT_ARRIVALS",
):
    if globals()[name] < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1, got {globals()[name]}.")
if LIVEROOM_RECENT_ARRIVALS > LIVEROOM_FULL_LIST_MAX:
    raise ImproperlyConfigured(
        "LIVEROOM_RECENT_ARRIVALS must be at most LIVEROOM_FULL_LIST_MAX "
        f"({LIVEROOM_FULL_LIST_MAX}), got {LIVEROOM_RECENT_ARRIVALS}."
    )
if LIVEROOM_PRESENCE_EXPIRY_SECONDS < 1:
    raise ImproperlyConfigured("LIVEROOM_PRESENCE_EXPIRY_SECONDS must be at least 1.")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The languages pages are offered in (docs/languages.md); each has a catalogue in locale/.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("ar", "العربية")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["liveroom.formats"]  # where Django's number formats are mended
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# With STATIC_ROOT set (the Dockerfile sets it and runs collectstatic), assets are served from
# there under content-hashed names, compressed, with a year's Cache-Control. Without it (make
# run, the tests), WhiteNoise serves straight from the apps' and static/ folders.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
if STATIC_ROOT:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
else:
    WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The forms carry one short field; anything much bigger is not a browser using them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# Django's database sessions, less two statements for each session that starts.
SESSION_ENGINE = "liveroom.rooms.sessions"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# Served over HTTPS: secure cookies, redirect plain HTTP, HSTS. Behind a proxy that terminates
# TLS, BEHIND_PROXY=1 trusts its X-Forwarded-Proto header (the proxy must set or strip it).
HTTPS = env_bool("HTTPS", default=False)
if env_bool("BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes talk plain HTTP
    SECURE_HSTS_SECONDS = env_number("HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", default=False)

# Scripts only from this site and only with the per-request nonce; htmx is configured for it
# (templates/room.html): no eval, no script tags from fragments, no injected styles.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# LOG_FORMAT=json writes one JSON object a line, for log collectors (liveroom/logs.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain") or "plain"
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f'LOG_FORMAT must be "plain" or "json", got {LOG_FORMAT!r}.')
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "liveroom.logs.PlainFormatter"},
        "json": {"()": "liveroom.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    # One handler, on the root: daphne's, Django's and the app's lines each appear once.
    "root": {"handlers": ["console"], "level": "INFO"},
}
