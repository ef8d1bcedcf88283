"""Settings for the shop, read from 12-factor environment variables.

With neither ``DATABASE_URL`` nor ``CELERY_BROKER_URL`` set, the shop runs embedded:
SQLite for Django and the event store, and projections caught up in-process right
after each command, so ``runserver`` works with nothing else installed.
"""

import os
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from shop.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_fraction(name: str, default: float) -> float:
    """A fraction in (0, 1] from the environment (unset or empty: ``default``); any
    other value stops the start with a sentence naming the variable."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        fraction = float(value)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction <= 1:  # NaN fails this too
        raise ImproperlyConfigured(
            f"{name} must be a number greater than 0 and at most 1, not {value!r}."
        )
    return fraction


def env_prepare_threshold(name: str, default: int) -> int | None:
    """psycopg's ``prepare_threshold`` from the environment: a whole number >= 0, or
    ``off`` (None: never prepare); unset or empty: ``default``. Anything else stops the
    start with a sentence naming the variable."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value == "off":
        return None
    if not (value.isascii() and value.isdigit()):
        raise ImproperlyConfigured(f"{name} must be a whole number >= 0 or 'off', not {value!r}.")
    return int(value)


DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and "pytest" not in sys.modules:
        raise ImproperlyConfigured(
            "Set SECRET_KEY (or DEBUG=1 for local development, as `./dev manage <command>` "
            "and `./dev serve` do)."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "backoffice.apps.BackofficeAdminConfig",  # django.contrib.admin with the shop's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "shop",
    "shop.accounts",
    "catalog",
    "orders",
    "shipping",
    "projections",
    "backoffice",  # above both sides: the admin's pages, forms and dashboard
    "demo",
]
MIDDLEWARE = [
    "shop.request_id.RequestIdMiddleware",  # first: every response says its request's id
    "shop.middleware.HeadWithoutBodyMiddleware",
    # /api/ paths end in "/" (accepted without it) and errors there are JSON.
    "shop.middleware.ApiPathsMiddleware",
    "shop.middleware.PrivateResponsesMiddleware",
    "shop.middleware.AdminContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "shop.middleware.RequestLimitsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "shop.metrics.MetricsMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out admin login into its 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "shop.urls"
# Every /api/ path ends in "/" and is also answered without it, the same answer
# (shop.middleware.ApiPathsMiddleware): no redirect, which would drop a POST's body.
APPEND_SLASH = False
WSGI_APPLICATION = "shop.wsgi.application"

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

# One URL for Django and for the event store (see shop/eventstore.py).
DATABASE_URL = os.environ.get("DATABASE_URL", "")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue for the lock at BEGIN instead of failing with "database is locked",
    # and WAL lets queries read the last committed read model while a projector writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# The read side's database (read models, checkpoints, shadow tables; shop/databases.py).
# Unset, the ``read`` alias is a second connection to DATABASE_URL's database.
READ_DATABASE_URL = os.environ.get("READ_DATABASE_URL", "")
DATABASES["read"] = (
    dj_database_url.parse(
        READ_DATABASE_URL,
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
    if READ_DATABASE_URL
    else {**DATABASES["default"], "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {}))}
)


def _where(db: dict) -> tuple:
    return (db["ENGINE"], db.get("HOST") or "", str(db.get("PORT") or ""), str(db["NAME"]))


READ_DATABASE_SPLIT = _where(DATABASES["read"]) != _where(DATABASES["default"])
if DATABASES["read"]["ENGINE"] != DATABASES["default"]["ENGINE"]:
    raise ImproperlyConfigured("READ_DATABASE_URL must use DATABASE_URL's engine.")
# Streaming replicas of the read database: query endpoints read from one that is up and
# at most READ_REPLICA_MAX_LAG_SECONDS behind, else from the read primary.
READ_REPLICA_URLS = env_list("READ_REPLICA_URLS", "")
READ_REPLICA_MAX_LAG_SECONDS = float(os.environ.get("READ_REPLICA_MAX_LAG_SECONDS", "5"))
for _number, _url in enumerate(READ_REPLICA_URLS, start=1):
    DATABASES[f"replica{_number}"] = {
        **dj_database_url.parse(_url, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
                                conn_health_checks=True),
        # A replica is read only, and no test database of its own is made for it.
        "TEST": {"MIRROR": "read"},
    }
    DATABASES[f"replica{_number}"].setdefault("OPTIONS", {})["connect_timeout"] = 2
DATABASE_ROUTERS = ["shop.databases.ReadSideRouter"]
# PostgreSQL: a hand-written read-side statement (shop.databases.prepared_cursor) that a
# connection runs this many times is prepared, and planned once. "off": never (a pooler
# in transaction mode without prepared statement support). Django's own queries are
# never prepared either way.
PREPARE_THRESHOLD = env_prepare_threshold("PREPARE_THRESHOLD", 5)
for _database in DATABASES.values():
    if _database["ENGINE"] == "django.db.backends.postgresql":
        _database.setdefault("OPTIONS", {})["prepare_threshold"] = PREPARE_THRESHOLD

# A request body over 1 MiB is refused (413) before it is read (shop/middleware.py).
MAX_REQUEST_BODY_BYTES = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a rule: Django's hook for "this user's password changed" (ends its tokens).
    {"NAME": "shop.accounts.services.EndTokensOnPasswordChange"},
]

# Dates and money in the back office are written as this locale writes them.
LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "en-us")
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve app static files without collectstatic (admin, API docs): fine for this app's
# handful of assets, and `collectstatic` still works for a CDN or proxy in front.
WHITENOISE_USE_FINDERS = True
# Until `collectstatic` has run, STATIC_ROOT does not exist; the finders serve anyway.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

# Throttle counters (and any other cache use) are shared by every web process: Redis
# from CACHE_URL, else REDIS_URL, else a redis:// Celery broker; local memory without.
CACHE_URL = os.environ.get("CACHE_URL") or os.environ.get("REDIS_URL") or ""
if not CACHE_URL and os.environ.get("CELERY_BROKER_URL", "").startswith(("redis:", "rediss:")):
    CACHE_URL = os.environ["CELERY_BROKER_URL"]
LOCAL_CACHE = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "shop"}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "shop",
        # A Redis that hangs must not hang requests (see shop/throttling.py).
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    } if CACHE_URL else LOCAL_CACHE,
    "local": {**LOCAL_CACHE, "LOCATION": "shop-local"},
}


def throttle_rates(overrides: str) -> dict[str, str | None]:
    """The default rates, changed by ``scope=rate,...`` (a rate of ``off``: no limit)."""
    rates: dict[str, str | None] = {
        "user": "1200/minute",  # every endpoint, per user (anonymous: per IP)
        "login_ip": "30/minute",
        "login_username": "10/minute",
        "register_ip": "20/hour",
        "register_username": "10/hour",
    }
    for item in filter(None, (part.strip() for part in overrides.split(","))):
        scope, _, rate = item.partition("=")
        rates[scope.strip()] = None if rate.strip() in {"", "off", "none"} else rate.strip()
    return rates


REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "shop.accounts.authentication.TokenOrBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON whose every string is valid text (a lone surrogate is 400 invalid).
    "DEFAULT_PARSER_CLASSES": ["shop.parsers.TextJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "shop.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "shop.schema.ShopAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["shop.throttling.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": throttle_rates(os.environ.get("THROTTLE_RATES", "")),
    # Proxies in front that append to X-Forwarded-For; 0 trusts only the peer address.
    "NUM_PROXIES": int(os.environ.get("NUM_PROXIES", "0")),
}

# The admin's login lockout (django-axes): AXES_FAILURE_LIMIT failures for one
# username (from any address; the name read as logging in reads it) lock that username
# out, and as many failures from one address (for any usernames) lock that address
# out, each for AXES_COOLOFF_TIME. The cool-off is minutes, not hours: whoever knows a
# staff member's username can keep them locked out only while they keep failing, never
# for longer than a few minutes after. The API's login is limited by the throttles above.
AUTHENTICATION_BACKENDS = [
    "shop.accounts.lockout.AdminLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = int(os.environ.get("ADMIN_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("ADMIN_LOCKOUT_MINUTES", "5")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "shop.accounts.lockout.lockout_username"
AXES_CLIENT_IP_CALLABLE = "shop.accounts.lockout.lockout_client_ip"  # NUM_PROXIES, as DRF
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "shop.accounts.lockout.lockout_response"
AXES_VERBOSE = False

# API tokens (django-rest-knox): stored hashed, valid for TOKEN_TTL_HOURS.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=float(os.environ.get("TOKEN_TTL_HOURS", "24"))),
    "AUTH_HEADER_PREFIX": "Token",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Shop API",
    "DESCRIPTION": "Event-sourced CQRS e-commerce backend: commands and queries.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: a nullable reference (an order's shipment) is `oneOf [ref, null]`, which
    # validators read as meant (3.0's `allOf` + `nullable` without `type` is not).
    "OAS_VERSION": "3.1.0",
    "TAGS": [
        {"name": "auth", "description": "Accounts and API tokens."},
        {"name": "commands", "description": "Changes: each appends events to the log."},
        {"name": "queries", "description": "Reads from the read models."},
        {"name": "health", "description": "Whether the shop can serve."},
    ],
    "CONTACT": {"name": "Shop API"},
    # Paths are relative to the server that serves the document.
    "SERVERS": [{"url": "/", "description": "The server that serves this document"}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "shop.schema.postprocess",
    ],
    # The interactive docs' assets are served by the shop itself (no CDN needed).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for the health status the health answer uses in two components
    # (drf-spectacular warns of the collision, and check --deploy must stay clean).
    "ENUM_NAME_OVERRIDES": {"HealthStatusEnum": ["ok", "degraded", "down"]},
}

# Celery. Without a broker the projections run in-process after each commit.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 2}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TIMEZONE = "UTC"
# Seconds between safety-net sweeps that trigger every projection.
PROJECTION_SWEEP_SECONDS = float(os.environ.get("PROJECTION_SWEEP_SECONDS", "2"))
# What beat's tasks carry: a command one of them runs is recorded as via "beat".
BEAT_HEADERS = {"via": "beat"}
CELERY_BEAT_SCHEDULE = {
    # The sweep: trigger every projection every couple of seconds, so a lost message, a
    # broker outage or a crashed worker delays the read side but never loses an event.
    "sweep-projections": {"task": "projections.sweep", "schedule": PROJECTION_SWEEP_SECONDS,
                          "options": {"headers": BEAT_HEADERS}},
    # Idempotency records live 24 hours; drop the expired ones (a bounded batch).
    "delete-expired-idempotency-records": {
        "task": "shop.delete_expired_idempotency_records",
        "schedule": 600.0,
        "options": {"headers": BEAT_HEADERS},
    },
}

# The shop's name, in the back office's header and title.
SHOP_NAME = os.environ.get("SHOP_NAME", "Harbour Shop")
# The currency of every price (an ISO 4217 code): the back office and the dashboard
# write money in it, as LANGUAGE_CODE's locale writes it ("€1,234.50" in en-us).
SHOP_CURRENCY = os.environ.get("SHOP_CURRENCY", "EUR")

# /api/health/ is "degraded" when a projection's oldest unprocessed event is older.
PROJECTION_LAG_ALERT_SECONDS = float(os.environ.get("PROJECTION_LAG_ALERT_SECONDS", "60"))
# /metrics also answers "Authorization: Bearer <METRICS_TOKEN>" (unset: staff only).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# How long a command waits for another writer of the same aggregates (its writer
# locks), or a duplicate for the first request with its Idempotency-Key.
COMMAND_LOCK_WAIT_SECONDS = float(os.environ.get("COMMAND_LOCK_WAIT_SECONDS", "10"))
# Idempotency records one user may hold at once (they live 24 hours); past it a new
# key is refused with 429 throttled.
IDEMPOTENCY_MAX_LIVE_KEYS = int(os.environ.get("IDEMPOTENCY_MAX_LIVE_KEYS", "10000"))

# Under a stream of commands, a projection's catch-ups start at most once per this many
# seconds; a command after a quiet spell is projected at once (projections/tasks.py).
PROJECTION_TRIGGER_INTERVAL = float(os.environ.get("PROJECTION_TRIGGER_INTERVAL", "0.05"))
# Notifications read per transaction by the projection runner.
PROJECTION_BATCH_SIZE = int(os.environ.get("PROJECTION_BATCH_SIZE", "1000"))
# Notifications per committed batch of a rebuild (blue/green on PostgreSQL; one
# transaction on SQLite): larger batches mean fewer rewrites of rows that change often.
PROJECTION_REBUILD_BATCH_SIZE = int(os.environ.get("PROJECTION_REBUILD_BATCH_SIZE", "5000"))
# How much the replay commands (rebuild_projections, verify_projections) lower their
# CPU priority, as ``nice -n``: background work, so the web processes and the live
# projections come first on a busy machine (0 leaves it as it is).
PROJECTION_REBUILD_NICE = int(os.environ.get("PROJECTION_REBUILD_NICE", "10"))
# The fraction of wall time the replay commands work: after each committed batch of
# the shadow's fill they pause busy x (1 - duty) / duty (0.5: as long as the batch
# took), leaving the rest of the CPU and the database to the live shop, as PostgreSQL's
# vacuum_cost_delay does; its backends serving the replay are not niced. A replay takes
# about 1/duty as long (1: no pausing). The swap (under its lock) is never paused.
PROJECTION_REBUILD_DUTY_CYCLE = env_fraction("PROJECTION_REBUILD_DUTY_CYCLE", 0.5)
# Build a rebuilt read model's secondary indexes after its bulk load instead of before.
PROJECTION_REBUILD_DEFER_INDEXES = os.environ.get(
    "PROJECTION_REBUILD_DEFER_INDEXES", "0"
).lower() in ("1", "true", "yes")


def web_threads(argv: list[str] = sys.argv) -> int:
    """Threads per web process: gunicorn's ``--threads`` (command line or
    ``GUNICORN_CMD_ARGS``), else 8 (the development server has a thread per request)."""
    args = [*argv, *os.environ.get("GUNICORN_CMD_ARGS", "").split()]
    if not any("gunicorn" in arg for arg in argv[:2]):
        return 8
    for index, arg in enumerate(args):
        if arg.startswith("--threads="):
            return int(arg.partition("=")[2])
        if arg == "--threads" and index + 1 < len(args):
            return int(args[index + 1])
    return 1  # gunicorn's default


# Requests of one web process that may wait for ``min_position`` at once; the others
# get 503 at once, so waiting clients never hold every thread (default: half of them).
QUERY_WAIT_SLOTS = int(os.environ.get("QUERY_WAIT_SLOTS") or max(1, web_threads() // 2))

# With DEBUG off, HTTPS is assumed: TLS ends at a proxy that sets X-Forwarded-Proto.
# ALLOW_HTTP=1 turns this off for a deployment with no TLS in front (and the tests).
ALLOW_HTTP = env_bool("ALLOW_HTTP", default=False)
if not DEBUG and not ALLOW_HTTP:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Load balancers and Prometheus probe the web processes directly, over HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^api/health/$", r"^metrics$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# One JSON object per line, each with the request id and the user (shop/logs.py);
# LOG_FORMAT=text for plain lines.
LOGGING = logging_config(os.environ.get("LOG_FORMAT", "json"),
                         os.environ.get("LOG_LEVEL", "INFO"))
