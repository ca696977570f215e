"""All configuration, from the environment (12-factor). One module; fails fast.

Embedded default: SQLite (WAL) and django-q2's ORM broker. At scale: set DATABASE_URL
(postgres://...) and REDIS_URL (redis://...) and nothing else changes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent

# A checkout's own local settings, written by `make` (dev mode and this checkout's own
# random keys), so a command copied from the README works as printed; the real
# environment always wins. MIGRATOR_ENV_FILE names another file; empty: none (production).
_ENV_FILE = os.environ.get("MIGRATOR_ENV_FILE", str(BASE_DIR / ".env"))
if _ENV_FILE:
    load_dotenv(_ENV_FILE, override=False)


def env(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = os.environ.get(name, default)
    if required and not value:
        raise ImproperlyConfigured(f"Set the environment variable {name}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.")


DEBUG = env_bool("MIGRATOR_DEBUG", False)
# Development (make run, tests) may fall back to fixed local keys; production must set them.
DEV = env_bool("MIGRATOR_DEV", DEBUG)

SECRET_KEY = env("DJANGO_SECRET_KEY") or (
    "dev-only-insecure-secret-key-change-me-0123456789abcdefghijklmnop" if DEV else None
)
if not SECRET_KEY:
    raise ImproperlyConfigured("Set the environment variable DJANGO_SECRET_KEY.")

# Fernet keys for endpoint secrets: comma-separated, the first encrypts, all decrypt.
MIGRATOR_FERNET_KEYS = [
    k.strip()
    for k in (
        env("MIGRATOR_FERNET_KEYS")
        or ("ZGV2LW9ubHktZmVybmV0LWtleS0wMTIzNDU2Nzg5YWI=" if DEV else "")
    ).split(",")
    if k.strip()
]
if not MIGRATOR_FERNET_KEYS:
    raise ImproperlyConfigured("Set the environment variable MIGRATOR_FERNET_KEYS.")

ALLOWED_HOSTS = [h for h in (env("DJANGO_ALLOWED_HOSTS") or "127.0.0.1,localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in (env("DJANGO_CSRF_TRUSTED_ORIGINS") or "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_q",
    "rest_framework",
    "accounts",
    "jobs",
    "reports",
]

MIDDLEWARE = [
    # /healthz before the host check and the HTTPS redirect: probes ask by the pod's IP
    "migrator.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # static files served by the web process itself (gunicorn in the container)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "reports.middleware.ViewerTimezoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "migrator.urls"
WSGI_APPLICATION = "migrator.wsgi.application"

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
                "reports.context.portal",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Measured: without these, 174 of 200 concurrent read-modify-write tasks failed with
    # "database is locked". WAL lets readers run beside the one writer.
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000; "
            "PRAGMA cache_size=-32768;"
        ),
    }
    # File-backed test database: worker threads and processes must see what tests write.
    # One per test session (the PID), so two sessions on one machine never share it.
    # a worker keeps its connection between tasks: opening one (and its PRAGMAs) for
    # each task cost 4-9 % of a cluster's CPU at 2,000-file batches (py-spy)
    _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 600)
    _db["TEST"] = {
        "NAME": env("MIGRATOR_TEST_DB")
        or os.path.join(tempfile.gettempdir(), f"migrator-test-{os.getpid()}.sqlite3")
    }
else:
    # Measured: CONN_MAX_AGE=0 made the ORM broker reconnect on every poll.
    _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 600)
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}_{os.getpid()}"}
    _db["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- background work (django-q2) --------------------------------------------------------
# timeout < lease < retry: a task past its timeout is killed before its lease lapses, and
# the broker hands a task out again only after the lease could have been taken over.
MIGRATOR_TASK_TIMEOUT = env_int("MIGRATOR_TASK_TIMEOUT", 600)
MIGRATOR_LEASE_SECONDS = env_int("MIGRATOR_LEASE_SECONDS", MIGRATOR_TASK_TIMEOUT + 30)
MIGRATOR_TASK_RETRY = env_int("MIGRATOR_TASK_RETRY", MIGRATOR_LEASE_SECONDS + 30)
if not MIGRATOR_TASK_TIMEOUT < MIGRATOR_LEASE_SECONDS < MIGRATOR_TASK_RETRY:
    raise ImproperlyConfigured(
        "Need MIGRATOR_TASK_TIMEOUT < MIGRATOR_LEASE_SECONDS < MIGRATOR_TASK_RETRY."
    )
MIGRATOR_WORKERS = env_int("MIGRATOR_WORKERS", 2)
MIGRATOR_BATCH_FILES = env_int("MIGRATOR_BATCH_FILES", 500)
MIGRATOR_BATCH_BYTES = env_int("MIGRATOR_BATCH_BYTES", 256 * 1024 * 1024)
MIGRATOR_COPY_THREADS = env_int("MIGRATOR_COPY_THREADS", 8)
MIGRATOR_RETRY_ATTEMPTS = env_int("MIGRATOR_RETRY_ATTEMPTS", 4)
MIGRATOR_RETRY_BACKOFF = float(env("MIGRATOR_RETRY_BACKOFF") or "0.5")
# an endpoint away for longer than a file's retries (a restart, a network blip): its files
# stay pending and the batch is tried again this much later, up to this many times in all
MIGRATOR_RETRY_LATER_SECONDS = env_int("MIGRATOR_RETRY_LATER_SECONDS", 15)
MIGRATOR_BATCH_ATTEMPTS = env_int("MIGRATOR_BATCH_ATTEMPTS", 20)
# a file that changed while it was copied (still being written): left pending for its
# batch's later tries like the above, but failed as changed_during_copy after this many
MIGRATOR_CHANGED_ATTEMPTS = env_int("MIGRATOR_CHANGED_ATTEMPTS", 3)
# on-premises agents ask for work (and heartbeat) this often; three missed: offline
MIGRATOR_AGENT_POLL_SECONDS = env_int("MIGRATOR_AGENT_POLL_SECONDS", 5)

REDIS_URL = env("REDIS_URL")
# A cache every process shares: django-q2 keeps its cluster stats there, so the web
# process can tell whether any worker cluster is alive.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "migrator_cache",
        }
    }
Q_CLUSTER = {
    "name": env("MIGRATOR_Q_NAME") or "migrator",
    "workers": MIGRATOR_WORKERS,
    "timeout": MIGRATOR_TASK_TIMEOUT,
    "retry": MIGRATOR_TASK_RETRY,
    "max_attempts": env_int("MIGRATOR_TASK_MAX_ATTEMPTS", 5),
    "queue_limit": 50,
    "bulk": 1,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "poll": 0.5,
    "label": "Background tasks",
    "cache": "default",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
Q_CLUSTER["sync"] = env_bool("MIGRATOR_Q_SYNC", False)

# --- auth / LDAP (accounts) ---------------------------------------------------------------
# Staff directory from AUTH_LDAP_* variables (accounts/ldap_config.py lists them); customer
# directories live on their Customer rows. Backends in order: throttle (django-axes), local
# accounts, staff directory, customer directories, role permissions.
from datetime import timedelta  # noqa: E402

from accounts.ldap_config import staff_directory_settings  # noqa: E402

globals().update(staff_directory_settings(os.environ))
MIGRATOR_DIRECTORY_TIMEOUT = float(env("AUTH_LDAP_TIMEOUT") or "3")
# a directory user's session is checked against the directory at most this often
MIGRATOR_DIRECTORY_RECHECK_SECONDS = env_int("MIGRATOR_DIRECTORY_RECHECK_SECONDS", 300)
INSTALLED_APPS += ["axes"]
MIDDLEWARE += [
    "accounts.middleware.AuditContextMiddleware",
    "accounts.middleware.DirectoryRecheckMiddleware",
    "accounts.middleware.StaffOnlyAdminMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]
AUTHENTICATION_BACKENDS = [
    "accounts.backends.ThrottleBackend",
    "accounts.backends.LocalBackend",
    "accounts.backends.StaffDirectoryBackend",
    "accounts.backends.CustomerDirectoryBackend",
    "accounts.backends.RoleBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/accounts/home/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
PASSWORD_RESET_TIMEOUT = env_int("MIGRATOR_LINK_DAYS", 3) * 86400  # invitations and resets
# Reverse proxies in front of the app whose X-Forwarded-For/-Proto we trust (0: none).
MIGRATOR_PROXY_COUNT = env_int("MIGRATOR_PROXY_COUNT", 0)
if MIGRATOR_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Failed sign-ins are throttled per user (every spelling of a name counts as one) and per
# address; lockouts are listed in the admin (Axes: access attempts).
AXES_FAILURE_LIMIT = env_int("MIGRATOR_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MIGRATOR_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "accounts.directory.throttle_key"
AXES_CLIENT_IP_CALLABLE = "accounts.services.client_ip"
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# Email: invitations and password resets. Development prints them on the console.
EMAIL_BACKEND = env("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend"
    if DEV
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL") or "Migrator <migrator@localhost>"
# Notifications (jobs/notifications.py): the site's address that emails link to (empty: no
# link), and how long an agent may be silent before its running jobs need attention.
MIGRATOR_PUBLIC_URL = (env("MIGRATOR_PUBLIC_URL") or "").rstrip("/")
MIGRATOR_AGENT_OFFLINE_MINUTES = env_int("MIGRATOR_AGENT_OFFLINE_MINUTES", 15)

# HTTPS in production (`manage.py check --deploy` passes with no warnings); off in
# development, where `make run` serves plain http on 127.0.0.1.
MIGRATOR_HTTPS = env_bool("MIGRATOR_HTTPS", not DEV)
SESSION_COOKIE_SECURE = MIGRATOR_HTTPS
CSRF_COOKIE_SECURE = MIGRATOR_HTTPS
SECURE_SSL_REDIRECT = env_bool("MIGRATOR_SSL_REDIRECT", MIGRATOR_HTTPS)
SECURE_HSTS_SECONDS = env_int("MIGRATOR_HSTS_SECONDS", 31536000 if MIGRATOR_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MIGRATOR_HSTS_INCLUDE_SUBDOMAINS", MIGRATOR_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("MIGRATOR_HSTS_PRELOAD", MIGRATOR_HTTPS)
SESSION_COOKIE_AGE = env_int("MIGRATOR_SESSION_HOURS", 12) * 3600
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE") or "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env("STATIC_ROOT") or str(BASE_DIR / "staticfiles")
# The container image sets MIGRATOR_STATIC_MANIFEST=1 and runs collectstatic at build:
# hashed names that whitenoise serves with a year's cache. Without it (development, tests)
# no manifest is needed and whitenoise serves STATIC_ROOT with a short cache.
_STATIC_BACKEND = (
    "whitenoise.storage.CompressedManifestStaticFilesStorage"
    if env_bool("MIGRATOR_STATIC_MANIFEST", False)
    else "whitenoise.storage.CompressedStaticFilesStorage"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": _STATIC_BACKEND},
}
# Before collectstatic (development, tests) there is no STATIC_ROOT yet: whitenoise then
# looks for files per request instead of listing them once at start (and warning).
WHITENOISE_AUTOREFRESH = DEBUG or not os.path.isdir(STATIC_ROOT)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL") or "INFO"},
    "loggers": {"django_q": {"level": env("Q_LOG_LEVEL") or "WARNING"}},
}

# --- REST API (djangorestframework + drf-spectacular) -------------------------------------
# /api/v1/: API tokens (accounts.ApiToken, hashed at rest) or the browser's session; staff
# do everything, a customer viewer reads its customers' jobs. /api/docs/ is served from the
# vendored Swagger UI (drf-spectacular-sidecar): no CDN.
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiTokenAuthentication",
        "accounts.api.authentication.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.StaffOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "accounts.api.pagination.Cursor",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # failed API authentications per client address, then 429 until the minute is over
    "DEFAULT_THROTTLE_RATES": {
        "api_auth_failures": f"{env_int('MIGRATOR_API_AUTH_FAILURES_PER_MINUTE', 20)}/min"
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Migrator API",
    "DESCRIPTION": "Customers, endpoints, migration jobs and their actions, progress, "
    "passes, files, errors, renames, events, permissions and reports as CSV. "
    "Authenticate with `Authorization: Bearer <token>` (make one at POST /api/v1/tokens/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.api.schema.error_responses",
    ],
}
