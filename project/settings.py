"""Settings for BYOK Chat, all read from the environment (and .env when present)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from project.private_files import private_dir, private_file

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")
# An empty `NAME=` (as in a copied .env.example) means "use the default", never "set to nothing".
env.ENVIRON = {name: value for name, value in os.environ.items() if value.strip()}

# Off unless asked for: `make run` writes DEBUG=true into the .env it creates on a fresh clone.
DEBUG = env.bool("DEBUG", default=False)
# Database file, embedded broker, mail and static files; private to the account that runs the product.
VAR_DIR = private_dir(Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))))


def envsecret(name: str, dev_default: str) -> str:
    """Read a secret; with DEBUG on a fixed development value stands in, with DEBUG off it must be set."""
    value = env.str(name, default="")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(
            f"{name} is not set. Run `make run` once to generate it into .env, "
            f"or set it in the environment (see README)."
        )
    return dev_default


DEV_ENCRYPTION_KEY = "dev:" + base64.urlsafe_b64encode(hashlib.sha256(b"byok-dev-only").digest()).decode()
SECRET_KEY = envsecret("SECRET_KEY", "dev-only-secret-key-never-use-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "project.views.csrf_failure"
PORT = env.int("PORT", default=8000)
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "accounts",
    "tokens",
    "chat",
]

# Static files are answered before this stack, on the event loop, by project.asgi.SiteHandler (ServeStatic).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "project.middleware.no_store",
    "project.middleware.nul_free_query",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.preferences.preferences_middleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.ApprovalMiddleware",
    "accounts.middleware.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "project.middleware.OneThreadHop",  # last: one thread hop per request instead of one per hook
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = "project.wsgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# Database
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Threads (live server, Celery test worker) need a shared file, not :memory:; one per test process.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        private_file(Path(DATABASES["default"]["NAME"]))
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif env.int("DATABASE_POOL_SIZE", default=20):
    # A process-wide pool: streaming requests hand their connection back while they wait on upstream.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env.int("DATABASE_POOL_SIZE", default=20),
        "timeout": 10,
    }
    # A connection the server ended (a restart, a failover) is replaced instead of failing a request, without the
    # empty query per checkout that CONN_HEALTH_CHECKS would have the pool send: project.dbpool.
    DATABASES["default"]["ENGINE"] = "project.postgresql"
else:
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads per web process that run requests' synchronous part (middleware, sync views, a chat send's checks).
WEB_THREADS = env.int("WEB_THREADS", default=32)

# Cache
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # django-redis keeps one connection pool per process; Django's own backend opens one per thread,
    # and ASGI runs every request's sync code in a new thread.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis outage degrades to cache misses (sessions fall back to the database) instead of 500s.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2, "IGNORE_EXCEPTIONS": True},
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_table",
        }
    }

# A small cache in each process for rows read by every chat request and changed rarely by staff (team limits,
# price overrides): saving one clears it in the process that saved it; other processes see the change within
# LOCAL_CACHE_SECONDS.
LOCAL_CACHE_SECONDS = env.float("LOCAL_CACHE_SECONDS", default=5.0)
CACHES["local"] = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "byok-local",
    "TIMEOUT": LOCAL_CACHE_SECONDS,
}

# Accounts (django-allauth: sign-up, log-in, password flows, email verification, two-factor, single sign-on)
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "account_login"
SIGNUP_OPEN = env.bool("SIGNUP_OPEN", default=True)
# open: anyone may sign up; approval: new accounts wait for staff; closed: no sign-up. SIGNUP_OPEN=false means closed.
SIGNUP_MODE = env.str("SIGNUP_MODE", default="open") if SIGNUP_OPEN else "closed"
if SIGNUP_MODE not in ("open", "approval", "closed"):
    raise ImproperlyConfigured(f"SIGNUP_MODE must be open, approval or closed, not {SIGNUP_MODE!r}.")
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# optional: a confirmation link is mailed, the account works at once; mandatory: no log-in before it is
# followed (needs working EMAIL_URL); none: no mail.
EMAIL_VERIFICATION = env.str("EMAIL_VERIFICATION", default="optional")
if EMAIL_VERIFICATION not in ("optional", "mandatory", "none"):
    raise ImproperlyConfigured(f"EMAIL_VERIFICATION must be optional, mandatory or none, not {EMAIL_VERIFICATION!r}.")
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {"login": "accounts.forms.LoginForm", "signup": "accounts.forms.SignupForm"}
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = EMAIL_VERIFICATION
# Sign-up never tells whether an email is registered. With mandatory verification the owner of a taken address
# gets an "account exists" mail and the page says "check your mail" either way; otherwise ("strict") a second
# account may carry the same, unverified, address.
ACCOUNT_PREVENT_ENUMERATION = True if EMAIL_VERIFICATION == "mandatory" else "strict"
ACCOUNT_UNIQUE_EMAIL = True
# Adding, removing or choosing an email address (and connecting a single sign-on identity) asks for the password again
# (then not for 5 minutes): a reset link goes to any address on the account, so a stolen session could otherwise add
# its own and take the account over.
ACCOUNT_REAUTHENTICATION_REQUIRED = True
ACCOUNT_SESSION_REMEMBER = True  # sessions last SESSION_COOKIE_AGE, as before; no "remember me" box
ACCOUNT_SIGNUP_REDIRECT_URL = "tokens:credential-list"
ACCOUNT_EMAIL_SUBJECT_PREFIX = ""  # the sender is "BYOK Chat"; our own subjects name the product
# Throttles, in the cache (Redis with REDIS_URL): failed log-ins per address and per account, sign-ups per
# address, password-reset mails per address and per email. "10/5m" = 10 per 5 minutes.
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="10/5m")
LOGIN_ACCOUNT_RATE_LIMIT = env.str("LOGIN_ACCOUNT_RATE_LIMIT", default="5/5m")
SIGNUP_RATE_LIMIT = env.str("SIGNUP_RATE_LIMIT", default="5/h")
PASSWORD_RESET_RATE_LIMIT = env.str("PASSWORD_RESET_RATE_LIMIT", default="10/h")
PASSWORD_RESET_EMAIL_RATE_LIMIT = env.str("PASSWORD_RESET_EMAIL_RATE_LIMIT", default="3/h")
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": f"{LOGIN_RATE_LIMIT}/ip,{LOGIN_ACCOUNT_RATE_LIMIT}/key",
    "signup": f"{SIGNUP_RATE_LIMIT}/ip",
    "reset_password": f"{PASSWORD_RESET_RATE_LIMIT}/ip,{PASSWORD_RESET_EMAIL_RATE_LIMIT}/key",
    "reset_password_from_key": "20/m/ip",
}
# Two-factor: TOTP with recovery codes, optional for everyone at /accounts/2fa/; MFA_REQUIRED_FOR_STAFF sends staff
# there before any staff page (/usage/, /admin/). Its secrets are sealed with ENCRYPTION_KEYS (tokens/mfa.py).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "BYOK Chat"
MFA_TOTP_TOLERANCE = 1  # a code typed as the 30 s period turns still counts (RFC 6238, section 5.2)
MFA_ADAPTER = "tokens.mfa.MFAAdapter"
MFA_FORMS = {"activate_totp": "tokens.mfa.ActivateTOTPForm"}
MFA_REQUIRED_FOR_STAFF = env.bool("MFA_REQUIRED_FOR_STAFF", default=False)
# Single sign-on through one OpenID Connect provider (Entra ID, Google Workspace, Keycloak, ...), set by the operator:
# its URL is trusted configuration, so the SSRF guard for user-typed URLs does not apply. Off while OIDC_SERVER_URL
# is empty. The log-in page then shows "Sign in with <OIDC_PROVIDER_NAME>"; new accounts follow SIGNUP_MODE.
OIDC_PROVIDER_ID = env.str("OIDC_PROVIDER_ID", default="sso")
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_SERVER_URL = env.str("OIDC_SERVER_URL", default="")
OIDC_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_SCOPES = env.list("OIDC_SCOPES", default=["openid", "profile", "email"])


def oidc_providers(*, provider_id: str, name: str, server_url: str, client_id: str, client_secret: str) -> dict:
    """SOCIALACCOUNT_PROVIDERS for one OpenID Connect provider, or none without a server URL."""
    app = {
        "provider_id": provider_id,
        "name": name,
        "client_id": client_id,
        "secret": client_secret,
        "settings": {"server_url": server_url, "oauth_pkce_enabled": True, "scope": OIDC_SCOPES},
    }
    return {"openid_connect": {"APPS": [app] if server_url else [], "OAUTH_PKCE_ENABLED": True}}


SOCIALACCOUNT_PROVIDERS = oidc_providers(
    provider_id=OIDC_PROVIDER_ID,
    name=OIDC_PROVIDER_NAME,
    server_url=OIDC_SERVER_URL,
    client_id=OIDC_CLIENT_ID,
    client_secret=OIDC_CLIENT_SECRET,
)
SOCIALACCOUNT_LOGIN_ON_GET = False  # a POST from our page starts it, so another site cannot
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # an IdP's email claim never takes over an existing account
SOCIALACCOUNT_STORE_TOKENS = False  # the provider's tokens are not kept
# The client address is REMOTE_ADDR, which uvicorn sets from X-Forwarded-For only for FORWARDED_ALLOW_IPS;
# allauth must not read the header itself.
ALLAUTH_TRUSTED_PROXY_COUNT = 0

# Email: by default each message is a file under var/mail/ (0700), never a log line, since it may hold a live link.
vars().update(env.email_url("EMAIL_URL", default="filemail://"))
EMAIL_FILE_PATH = str(private_dir(Path(env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail")))))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="BYOK Chat <noreply@localhost>")

# Security
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# A TLS proxy in front: list its addresses in FORWARDED_ALLOW_IPS so the scheme and client address it forwards are
# believed (uvicorn applies it; `make run` passes it on), or let the proxy redirect and set SECURE_SSL_REDIRECT=false.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
FORWARDED_ALLOW_IPS = env.list("FORWARDED_ALLOW_IPS", default=[])
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Debug pages, error emails and logs never show secrets, frame variables, POST values or cookies.
DEFAULT_EXCEPTION_REPORTER_FILTER = "project.errors.SecretSafeReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "project.errors.SecretSafeExceptionReporter"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
if OIDC_SERVER_URL:
    # The log-in page's "Sign in with ..." form is answered by a redirect to the provider: CSP must allow it.
    _idp = urlsplit(OIDC_SERVER_URL)
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"].append(f"{_idp.scheme}://{_idp.netloc}")

# Encryption (first key seals, every key opens)
ENCRYPTION_KEYS = [key.strip() for key in envsecret("ENCRYPTION_KEYS", DEV_ENCRYPTION_KEY).split(",") if key.strip()]

# Upstream API
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1").rstrip("/")
DEFAULT_MODEL = env.str("DEFAULT_MODEL", default="gpt-4o-mini")
UPSTREAM_ALLOWLIST = env.list("UPSTREAM_ALLOWLIST", default=[])
ALLOW_INSECURE_UPSTREAMS = env.bool("ALLOW_INSECURE_UPSTREAMS", default=False)
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=5.0)
# Longest wait for a reply's first token (reasoning models think, local servers load the model first).
UPSTREAM_FIRST_TOKEN_TIMEOUT = env.float("UPSTREAM_FIRST_TOKEN_TIMEOUT", default=600.0)
# Longest silence between chunks once a reply has started, and after finish_reason for the usage chunk.
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=60.0)
UPSTREAM_TAIL_SECONDS = env.float("UPSTREAM_TAIL_SECONDS", default=5.0)
UPSTREAM_MAX_SECONDS = env.float("UPSTREAM_MAX_SECONDS", default=1800.0)
UPSTREAM_MAX_EVENT_BYTES = env.int("UPSTREAM_MAX_EVENT_BYTES", default=1024 * 1024)
UPSTREAM_MAX_REPLY_BYTES = env.int("UPSTREAM_MAX_REPLY_BYTES", default=32 * 1024 * 1024)
# Text (answer plus reasoning) one reply may hold: about 250k tokens, past any model's output limit today.
UPSTREAM_MAX_REPLY_CHARS = env.int("UPSTREAM_MAX_REPLY_CHARS", default=1_000_000)
UPSTREAM_MAX_LIST_BYTES = env.int("UPSTREAM_MAX_LIST_BYTES", default=8 * 1024 * 1024)
CHECK_TIMEOUT = env.float("CHECK_TIMEOUT", default=10.0)

# Credential lifecycle
REFRESH_MARGIN_SECONDS = env.int("REFRESH_MARGIN_SECONDS", default=300)
KEY_CHECK_INTERVAL_SECONDS = env.int("KEY_CHECK_INTERVAL_SECONDS", default=6 * 3600)
REFRESH_SCAN_SECONDS = env.int("REFRESH_SCAN_SECONDS", default=60)
REFRESH_MAX_FAILURES = env.int("REFRESH_MAX_FAILURES", default=5)
# Beat fans out one refresh task per REFRESH_BATCH_SIZE due credentials, each with REFRESH_THREADS requests at once.
# Token requests wait on the network (tens to hundreds of ms at a real identity provider): 32 at once per worker
# process, 96 per batch (3 rounds). At 8 and 24, one worker node used half a core for 10,000 refreshes on the local
# token server and took 37 s; at 32 and 96, 19 s (bench/bench_refresh.py).
REFRESH_BATCH_SIZE = env.int("REFRESH_BATCH_SIZE", default=96)
REFRESH_THREADS = env.int("REFRESH_THREADS", default=32)
KEY_CHECK_BATCH = env.int("KEY_CHECK_BATCH", default=500)

# Chat
CHAT_RATE_LIMIT_PER_MINUTE = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=20)
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=32000)
USAGE_RETENTION_DAYS = env.int("USAGE_RETENTION_DAYS", default=90)
# A reply's lease on its conversation lapses this long after its process stops renewing it (so: after it died).
CHAT_LEASE_SECONDS = env.float("CHAT_LEASE_SECONDS", default=30.0)
# Longest silence on a reply's event stream before a keep-alive comment (proxies cut idle streams).
CHAT_KEEPALIVE_SECONDS = env.float("CHAT_KEEPALIVE_SECONDS", default=10.0)
# A reply's new text reaches its readers at most this often (0: every chunk as it comes); the first text at once.
CHAT_STREAM_FLUSH_SECONDS = env.float("CHAT_STREAM_FLUSH_SECONDS", default=0.04)

# API for programs (/v1/)
API_ACCESS_TOKEN_LIFETIME = env.int("API_ACCESS_TOKEN_LIFETIME", default=3600)
API_TOKEN_RATE_LIMIT = env.str("API_TOKEN_RATE_LIMIT", default="30/m")
API_AUTH_FAILURE_RATE_LIMIT = env.str("API_AUTH_FAILURE_RATE_LIMIT", default="20/5m")

# Celery
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
    }
    # Every process (web, worker, beat, tests) may be first to touch the broker.
    for folder in ("queue", "control", "processed"):
        private_dir(BROKER_DIR / folder)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "validate-credentials": {
        "task": "tokens.tasks.validate_credentials",
        "schedule": float(env.int("KEY_CHECK_SCAN_SECONDS", default=300)),
    },
    "refresh-due-credentials": {
        "task": "tokens.tasks.refresh_due_credentials",
        "schedule": float(REFRESH_SCAN_SECONDS),
    },
    "expire-credentials": {
        "task": "tokens.tasks.expire_credentials",
        "schedule": 300.0,
    },
    "close-abandoned-replies": {
        "task": "chat.tasks.close_abandoned_replies",
        "schedule": 15.0,  # with the lease, a dead process's reply is closed within CHAT_LEASE_SECONDS + 15 s
    },
    "prune-usage": {
        "task": "chat.tasks.prune_usage",
        "schedule": 3600.0,
    },
    "prune-access-tokens": {
        "task": "tokens.tasks.prune_access_tokens",
        "schedule": 3600.0,
    },
    "send-budget-digest": {
        "task": "chat.tasks.send_budget_digest",
        "schedule": crontab(hour=env.int("BUDGET_DIGEST_HOUR", default=7), minute=0),
    },
}

# Static files
STATIC_URL = "static/"
STATIC_ROOT = private_dir(VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "project" / "static"]
# Decided at start-up, so the test runner turning DEBUG off still serves app static files.
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG


def _static_headers(headers, path: str, url: str) -> None:
    """SecurityMiddleware's headers that matter for a static file, which ServeStatic answers before that middleware."""
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = SECURE_REFERRER_POLICY


SERVESTATIC_ADD_HEADERS_FUNCTION = _static_headers
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Language and time: the language comes from the switcher (cookie), else Accept-Language; English is the fallback.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["project.formats"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE: Final = "Lax"
# The team's zone: usage days, monthly budgets and the digest hour count in it (each person still sees times in
# their own zone). After changing it, run `manage.py rebuild_usage_rollup` so past days are counted in the new one.
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

LOGGING_CONFIG = "project.errors.configure_logging"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact": {"()": "project.errors.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # These libraries log request bodies and tokens at DEBUG.
        "authlib": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "requests_oauthlib": {"level": "WARNING"},
    },
}
