"""Settings, all read from the environment (12-factor), with defaults that run the
embedded devnet out of the box.

Two ways to run, one code path (see docs/architecture.md):

* embedded default: SQLite and an in-process Redis-protocol server (fakeredis),
  started by ``make run`` — nothing to install;
* production and tests: ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``.

Every setting is listed with its meaning in docs/configuration.md and
deploy/.env.example. Numbers carry a comment saying why they are what they are.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from erc8004 import logs as _logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Runtime files of the embedded default (SQLite, make run's logs and metrics files).
# A test of `make run` points it at a scratch directory so it never touches yours.
VAR_DIR = Path(env.str("ERC8004_VAR_DIR", default=str(BASE_DIR / "var")))

#
# Core Django
#

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# "production" refuses weak secrets; "development" (make run) and "test" do not.
ENVIRONMENT = env.str("ERC8004_ENV", default="development")
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-secret-key-change-me-0123456789")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Refresh-token rotation with a blacklist: a used or logged-out refresh token is dead.
    "rest_framework_simplejwt.token_blacklist",
    # Operations (issue 6): request ids and structured logs, also inside Celery tasks.
    "django_structlog",
    "erc8004",
    "indexing",
    "agents",
    "actions",
    "triggers",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Operations (issue 6): an X-Request-ID on every response, bound to the request's logs.
    "erc8004.logs.RequestIdMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "erc8004.urls"
WSGI_APPLICATION = "erc8004.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "erc8004" / "templates"],
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

#
# Database
#

# Embedded default: a SQLite file under var/. Production and tests: PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'erc8004.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, workers, beat) share one file: wait for the write
    # lock instead of failing at once, and let readers proceed during writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# Each checkout gets its own test database, so parallel clones (CI beside a
# developer's session) never drop each other's tables.
DATABASES["default"]["TEST"] = {
    "NAME": env.str(
        "TEST_DATABASE_NAME",
        default="test_erc8004_" + hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8],
    )
}
IS_SQLITE = DATABASES["default"]["ENGINE"].endswith("sqlite3")
if IS_SQLITE:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#
# Redis: broker, locks, shared rate limits, throttling cache
#

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every key this deployment writes starts with this prefix (Celery queues included),
# so two deployments or test runs can share one Redis without stealing each other's work.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="erc8004:")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX + "cache",
        "TIMEOUT": 300,
    }
}

#
# Celery (see reference/stack.md §1: acks late + idempotent tasks, visibility
# timeout above every countdown, prefetch 1)
#

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None  # tasks report through PostgreSQL rows, never through results
CELERY_TASK_IGNORE_RESULT = True
# 1 h: longer than the longest countdown we schedule (retry ladders above 10 min live
# in the outbox rows and are re-enqueued by sweepers, never as Celery ETAs).
_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _VISIBILITY_TIMEOUT,
    "global_keyprefix": REDIS_KEY_PREFIX + "celery:",
}
CELERY_VISIBILITY_TIMEOUT = _VISIBILITY_TIMEOUT
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env.float("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", default=15.0)
# A running task is NOT killed when the broker connection drops (Redis restart,
# failover, network blip): it finishes its database work and gives back what it holds.
# Killing it (True) terminated a prefork child mid-poll, and the chain's poller lease
# then blocked indexing for INDEXING_LEASE_SECONDS (tests/faults/test_redis_outage.py,
# tests/erc8004/test_broker.py). Its message cannot be acknowledged on the new
# connection; if Redis kept it, it is redelivered after the visibility timeout and
# loses its claim — every task is idempotent.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task
# unless this is set: a new PostgreSQL backend (a fork, several ms of CPU) per task —
# measured as most of a delivery's cost. Connections are kept instead and recycled by
# Django's own rule (CONN_MAX_AGE, or after an error): erc8004/celery.py runs
# close_old_connections() around every task, as Django does around every request.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1_000_000)
# Task events feed Flower. They cost ~4 extra Redis publishes per task; a deployment
# that does not watch a queue in Flower can turn them off for those workers.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True)
# A task-sent event is a second Redis publish per message: on a 1,000-destination
# fan-out it doubled the time to publish (bench/fanout.py). Flower still sees every
# task from the workers' events (received, started, succeeded); turn this on only to
# watch messages waiting in the queue.
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# One queue per workload, each scaled on its own (DESIGN.md).
CELERY_TASK_DEFAULT_QUEUE = "indexing"
CELERY_TASK_ROUTES = {
    "indexing.*": {"queue": "indexing"},
    # Registration and feedback files: their own queue, so a slow or hostile file
    # server never delays a chain's poll (the fault suite found polls waiting minutes
    # behind fetches of names whose DNS did not answer).
    "agents.*": {"queue": "files"},
    "triggers.*": {"queue": "triggers"},
    "actions.*": {"queue": "actions"},
}
# Every beat entry expires before the next tick, so a backlog of ticks never piles
# up while workers are down (Saleor's rule).
INDEXING_DISPATCH_INTERVAL = env.float("INDEXING_DISPATCH_INTERVAL", default=1.0)
CELERY_BEAT_SCHEDULE = {
    "indexing-dispatch-polls": {
        "task": "indexing.tasks.dispatch_polls",
        "schedule": INDEXING_DISPATCH_INTERVAL,
        "options": {"expires": 5},
    },
    "triggers-process-confirmations": {
        "task": "triggers.tasks.process_confirmations",
        "schedule": 2.0,
        "options": {"expires": 10},
    },
    "triggers-sweep-evaluations": {
        "task": "triggers.tasks.sweep_evaluations",
        "schedule": 15.0,
        "options": {"expires": 30},
    },
}

#
# Indexing
#

# A poll run indexes at most this many blocks, then re-enqueues itself if behind.
INDEXING_MAX_BLOCKS_PER_POLL = env.int("INDEXING_MAX_BLOCKS_PER_POLL", default=10000)
# ... and stops fetching once it holds this many logs, so one batch transaction (events +
# projections) stays well under a second and a few MB however dense the history is.
INDEXING_MAX_EVENTS_PER_BATCH = env.int("INDEXING_MAX_EVENTS_PER_BATCH", default=5000)
# A poll fetches up to this many batches' worth of logs at once and commits them one
# transaction per batch: fewer round trips than one fetch per batch, bounded memory.
INDEXING_BATCHES_PER_POLL = env.int("INDEXING_BATCHES_PER_POLL", default=2)
# Seconds one JSON-RPC request may take before the next endpoint is tried.
INDEXING_RPC_TIMEOUT = env.float("INDEXING_RPC_TIMEOUT", default=10.0)
# The per-chain poller lease; longer than a poll's hard time limit, so only a crashed
# worker's lease ever runs out, and then within this many seconds.
INDEXING_LEASE_SECONDS = env.int("INDEXING_LEASE_SECONDS", default=150)
INDEXING_POLL_TIME_LIMIT = 120
# manage.py head_listener (indexing/heads.py): the longest wait between reconnects of
# a dropped newHeads websocket (it starts at 1 s and doubles).
HEADS_RECONNECT_MAX_SECONDS = env.float("HEADS_RECONNECT_MAX_SECONDS", default=30.0)
# Devnet chain seeded by `manage.py devnet_up` (and make run).
DEVNET_RPC_URL = env.str("DEVNET_RPC_URL", default="http://127.0.0.1:8545")
DEVNET_CHAIN_ID = env.int("DEVNET_CHAIN_ID", default=31337)

#
# Outbound HTTP (registration files, webhooks, MCP): private targets refused unless
# allow-listed (CIDRs or host names). The test suite allows 127.0.0.0/8.
#

OUTBOUND_ALLOWLIST = env.list("OUTBOUND_ALLOWLIST", default=[])
# Extra CA bundle for receivers behind a private CA (PEM file); empty = the system store.
OUTBOUND_CA_FILE = env.str("OUTBOUND_CA_FILE", default="")
# Seconds a host name may take to resolve (getaddrinfo runs on resolver threads; a
# lookup that does not answer in time fails the request as a retryable timeout).
OUTBOUND_DNS_TIMEOUT = env.float("OUTBOUND_DNS_TIMEOUT", default=3.0)

#
# Secrets at rest (erc8004/crypto.py): comma-separated Fernet keys, the first encrypts,
# all decrypt. Empty outside production = one key derived from DJANGO_SECRET_KEY.
#

SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])

#
# Actions: destinations, the delivery outbox and its engine (docs/actions.md)
#

# Retry ladder in seconds: the wait before retry n (jittered ±20%). 5 s absorbs a
# blip, minutes ride out a deploy, hours an outage; the sum (~10.7 h) is how long a
# receiver may be down before a delivery is dead-lettered (replayable from the admin).
# Longer waits than a few minutes never become Celery countdowns (visibility timeout):
# the row waits in PostgreSQL and the dispatcher enqueues it when due.
ACTIONS_RETRY_LADDER = [
    float(s)
    for s in env.list("ACTIONS_RETRY_LADDER", default=["5", "30", "120", "600", "1800", "3600", "10800", "21600"])
]
# The Celery queue sends are published to (the one CELERY_TASK_ROUTES gives actions.*).
ACTIONS_QUEUE = env.str("ACTIONS_QUEUE", default="actions")
# Backpressure: the dispatcher never lets the `actions` Redis list grow past this many
# messages (each of up to ACTIONS_SEND_BATCH deliveries); everything else waits as
# rows. Several seconds of work for a worker pool, and small enough for Redis never
# to matter.
ACTIONS_QUEUE_LIMIT = env.int("ACTIONS_QUEUE_LIMIT", default=2000)
# Deliveries one message carries (at most). A worker sends a message's deliveries
# concurrently on its send threads, each claimed and recorded on its own — so a slow
# receiver delays nobody else — while Celery's per-message cost (consume, ack, task
# events) is paid once per batch: a 1,000-destination fan-out is 125 messages, not
# 1,000 (bench/fanout.py). 1 = one message per delivery.
ACTIONS_SEND_BATCH = env.int("ACTIONS_SEND_BATCH", default=8)
# Send threads per worker process for batched messages (each may hold a database
# connection while it sends).
ACTIONS_SEND_THREADS = env.int("ACTIONS_SEND_THREADS", default=32)
# Rows one dispatcher transaction locks and enqueues; keeps the transaction short.
ACTIONS_DISPATCH_BATCH = env.int("ACTIONS_DISPATCH_BATCH", default=500)
# An enqueued row is not enqueued again for this long: the message is presumed lost
# (Redis restart, worker killed before ack) only after it. Longer than a full queue
# takes to drain (ACTIONS_QUEUE_LIMIT / throughput ≈ 7 s), so no duplicate messages.
ACTIONS_DISPATCH_GRACE_SECONDS = env.float("ACTIONS_DISPATCH_GRACE_SECONDS", default=60.0)
# The dispatcher runs every second: deliveries due now are sent within ~1 s even when
# their fast-path message was lost or held back by backpressure.
ACTIONS_DISPATCH_INTERVAL = env.float("ACTIONS_DISPATCH_INTERVAL", default=1.0)
# The sweeper (leases of crashed senders) is cheap; 10 s bounds how late it notices.
ACTIONS_SWEEP_INTERVAL = env.float("ACTIONS_SWEEP_INTERVAL", default=10.0)
# A sending lease lasts the destination's timeout + the longest rate-limit wait + this
# margin (DB writes, scheduling). Only a crashed sender's lease ever runs out.
ACTIONS_LEASE_MARGIN_SECONDS = env.float("ACTIONS_LEASE_MARGIN_SECONDS", default=30.0)
# Per-destination request timeout: default and ceiling (the ceiling keeps a send well
# under the task time limits below and the lease above).
ACTIONS_DEFAULT_TIMEOUT = env.float("ACTIONS_DEFAULT_TIMEOUT", default=10.0)
ACTIONS_MAX_TIMEOUT = env.float("ACTIONS_MAX_TIMEOUT", default=60.0)
# A sender waits in-process for a rate-limit slot at most this long; a later slot is
# not reserved and the row is rescheduled instead (no attempt spent, thread freed).
ACTIONS_RATE_LIMIT_MAX_WAIT = env.float("ACTIONS_RATE_LIMIT_MAX_WAIT", default=2.0)
# A receiver's Retry-After is honoured up to this many seconds (a hostile or broken
# "retry after a year" must not park a delivery forever).
ACTIONS_RETRY_AFTER_MAX = env.float("ACTIONS_RETRY_AFTER_MAX", default=6 * 3600.0)
# Bytes of a receiver's response read and kept: enough for an error message or a
# Telegram result, never a whole page.
ACTIONS_RESPONSE_MAX_BYTES = env.int("ACTIONS_RESPONSE_MAX_BYTES", default=65536)
# Webhook signing-key rotation: the previous key keeps signing (second signature)
# this long, so receivers can switch keys without a gap.
ACTIONS_WEBHOOK_SECRET_OVERLAP_SECONDS = env.int("ACTIONS_WEBHOOK_SECRET_OVERLAP_SECONDS", default=24 * 3600)
# Telegram Bot API. The token may also be set per destination (its secret).
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org")
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
# Telegram's published flood limits (Bot FAQ): ~30 messages/s per bot, ~1/s per chat,
# ~20/min per group. Shared by all workers through Redis token buckets.
TELEGRAM_GLOBAL_PER_SECOND = env.float("TELEGRAM_GLOBAL_PER_SECOND", default=30.0)
TELEGRAM_PER_CHAT_PER_SECOND = env.float("TELEGRAM_PER_CHAT_PER_SECOND", default=1.0)
TELEGRAM_GROUP_PER_MINUTE = env.float("TELEGRAM_GROUP_PER_MINUTE", default=20.0)
# MCP: "legacy" = the initialize handshake + Mcp-Session-Id every current server
# speaks; "auto" = the SDK probes server/discover (2026-07-28 protocol) first.
MCP_CONNECT_MODE = env.str("MCP_CONNECT_MODE", default="legacy")
# Celery time limits of one send: above the ceiling timeout + the rate-limit wait,
# below the lease (a prefork child stuck past it is killed; the thread pool relies on
# the outbound total time cap instead).
ACTIONS_SEND_SOFT_TIME_LIMIT = ACTIONS_MAX_TIMEOUT + ACTIONS_RATE_LIMIT_MAX_WAIT + 10
ACTIONS_SEND_TIME_LIMIT = ACTIONS_SEND_SOFT_TIME_LIMIT + 10

CELERY_BEAT_SCHEDULE["actions-dispatch-deliveries"] = {
    "task": "actions.tasks.dispatch_deliveries",
    "schedule": ACTIONS_DISPATCH_INTERVAL,
    "options": {"expires": max(5.0, 5 * ACTIONS_DISPATCH_INTERVAL)},
}
CELERY_BEAT_SCHEDULE["actions-sweep-deliveries"] = {
    "task": "actions.tasks.sweep_deliveries",
    "schedule": ACTIONS_SWEEP_INTERVAL,
    "options": {"expires": 2 * ACTIONS_SWEEP_INTERVAL},
}

#
# Agents: registration and feedback files (agents/files.py, agents/services.py)
#

# The same caps for every off-chain file, whatever its URI scheme: registration files
# are a few KB; 1 MiB leaves room for inline images without letting one URI fill memory.
FILE_FETCH_MAX_BYTES = env.int("FILE_FETCH_MAX_BYTES", default=1024 * 1024)
# Total seconds per HTTP fetch (connect, redirects, body); a slow-loris server is cut off.
FILE_FETCH_TIMEOUT = env.float("FILE_FETCH_TIMEOUT", default=10.0)
# ipfs:// URIs are fetched through these gateways, tried in order until one answers
# (path style: {gateway}/ipfs/{cid}/{path}). Put your own gateway first in production:
# public gateways rate-limit and are sometimes down.
IPFS_GATEWAYS = env.list("IPFS_GATEWAYS", default=["https://ipfs.io", "https://dweb.link", "https://w3s.link"])
# Waits (seconds) before re-trying a transient failure (timeout, 5xx, 429, connection
# error); one retry per entry, then the file is in error until the re-fetch schedule.
# Each stays below the broker's visibility timeout (1 h), so a retry is a countdown.
FILE_FETCH_RETRY_DELAYS = [int(s) for s in env.list("FILE_FETCH_RETRY_DELAYS", default=["30", "120", "600", "1800"])]
# http(s) files can change without an on-chain event, and failed files may come back:
# both are read again after this long. ipfs and data: files are immutable once read.
FILE_REFETCH_INTERVAL = env.int("FILE_REFETCH_INTERVAL", default=24 * 3600)
# Files one beat tick schedules (re-fetch) or re-enqueues (sweeper): keeps each tick short.
FILE_SWEEP_BATCH = env.int("FILE_SWEEP_BATCH", default=500)
# A pending file whose attempt time passed this long ago lost its message (Redis restart,
# worker killed): the sweeper enqueues it again. Longer than a fetch can take (3 gateways x 10 s).
FILE_PENDING_GRACE_SECONDS = env.int("FILE_PENDING_GRACE_SECONDS", default=120)

CELERY_BEAT_SCHEDULE["agents-refetch-files"] = {
    "task": "agents.tasks.refetch_due_files",
    "schedule": env.float("FILE_REFETCH_CHECK_INTERVAL", default=300.0),
    "options": {"expires": 60},
}
CELERY_BEAT_SCHEDULE["agents-sweep-pending-files"] = {
    "task": "agents.tasks.sweep_pending_files",
    "schedule": env.float("FILE_SWEEP_INTERVAL", default=60.0),
    "options": {"expires": 30},
}

#
# Auth, i18n, static
#

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

#
# REST framework and OpenAPI
#

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": (
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ),
    # Accounts (issue 5): JWT first, so an anonymous request gets 401 with
    # `WWW-Authenticate: Bearer`; then API keys (programs); then the session (admin,
    # browsable API; CSRF-checked).
    "DEFAULT_AUTHENTICATION_CLASSES": (
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "erc8004.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ),
    "DEFAULT_PERMISSION_CLASSES": ("rest_framework.permissions.IsAuthenticatedOrReadOnly",),
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    # One error body everywhere (erc8004/api.py, docs/api.md): status, code, detail,
    # field errors for 400s, retry_after for 429s; services' Django ValidationErrors too.
    "EXCEPTION_HANDLER": "erc8004.api.api_exception_handler",
    # JSON with a nesting guard (erc8004/api.py); forms for the browsable API.
    "DEFAULT_PARSER_CLASSES": (
        "erc8004.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ),
    # One throttle for the whole API: a Redis counter per user / API key / anonymous IP
    # (erc8004/auth.py; rates in API_THROTTLE_RATES below). DRF throttles are a fairness
    # tool, not a security boundary (reference/stack.md §4.4).
    "DEFAULT_THROTTLE_CLASSES": ("erc8004.auth.PrincipalRateThrottle",),
    # Proxies in front of the app that append to X-Forwarded-For (0 = direct); set it, or
    # every client behind a load balancer shares the balancer's throttle bucket.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
}
# Public agent ids resolve through the deployments table (agents/api/selectors.py); it
# changes a few times a year, so each process keeps it this many seconds (saves made
# through the admin or the ORM in the same process clear it at once).
API_DEPLOYMENTS_CACHE_SECONDS = env.float("API_DEPLOYMENTS_CACHE_SECONDS", default=10.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "erc8004 API",
    "DESCRIPTION": "Index, triggers and actions for ERC-8004 Trustless Agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Accounts (issue 5): the two role choice sets get stable names.
    # Several models have a "status": name each choice set after what it is.
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "erc8004.models.Role.choices",
        "GrantableRoleEnum": "erc8004.models.GRANTABLE_ROLE_CHOICES",
        "FileStatusEnum": "agents.models.FileStatus.choices",
        "DeliveryStatusEnum": "actions.models.DeliveryStatus.choices",
    },
}

#
# Accounts, JWT, API keys, throttling (issue 5; docs/api.md)
#

# Signs JWT access and refresh tokens (HS256). Outside production a key is derived
# from DJANGO_SECRET_KEY so `make run` needs no setup; production refuses a missing
# or weak one (guard below). Rotating it logs everybody out — that is the point.
JWT_SECRET = env.str("JWT_SECRET", default="")
# Values seen in tutorials and .env examples: never acceptable, whatever their length.
JWT_WEAK_SECRETS = frozenset(
    {
        "secret",
        "changeme",
        "change-me",
        "jwt_secret",
        "jwt-secret",
        "your-secret-key",
        "your_jwt_secret",
        "your-256-bit-secret",
        "supersecret",
        "password",
        "development",
        "please-change-this-secret-in-production",
    }
)
_JWT_SIGNING_KEY = JWT_SECRET or hashlib.sha256(b"erc8004-jwt-v1:" + SECRET_KEY.encode()).hexdigest()
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": _JWT_SIGNING_KEY,
    # 15 min: short enough that a leaked access token is soon useless; the refresh
    # token (7 days, rotated on every use, the old one blacklisted) keeps a session.
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    # A token carries a hash of the password hash: changing the password revokes
    # every token issued before.
    "CHECK_REVOKE_TOKEN": True,
    "LEEWAY": 5,  # seconds of clock skew between hosts
    "AUTH_HEADER_TYPES": ("Bearer",),
}
# Anyone may register (a personal organization comes with the account).
ACCOUNTS_REGISTRATION_OPEN = env.bool("ACCOUNTS_REGISTRATION_OPEN", default=True)
# An API key's last_used_at is written at most this often (one UPDATE per key per
# interval, not one per request).
API_KEY_LAST_USED_INTERVAL_SECONDS = env.int("API_KEY_LAST_USED_INTERVAL_SECONDS", default=60)
# Throttle rates ("N/second|minute|hour|day"), per principal. Counters live in Redis
# (erc8004/auth.py), so every web process counts together; a budget is spent per
# window starting at the first request. 3000/min for a person or a program is 50
# requests a second sustained — far above a dashboard's or a bot's needs; anonymous
# clients (the public read API, an explorer page makes a handful of calls) get 20/s
# per IP; login attempts are counted per client IP and per username, so a password
# cannot be guessed faster than 10 a minute.
API_THROTTLE_RATES = {
    "user": env.str("THROTTLE_RATE_USER", default="3000/min"),
    "apikey": env.str("THROTTLE_RATE_APIKEY", default="3000/min"),
    "anon": env.str("THROTTLE_RATE_ANON", default="1200/min"),
    "login": env.str("THROTTLE_RATE_LOGIN", default="10/min"),
    "test_send": env.str("THROTTLE_RATE_TEST_SEND", default="30/min"),
}

#
# Operations (issue 6): health, heartbeats, metrics, sweeper pacing (docs/runbook.md)
#

# The Celery queues a deployment runs one worker pool each for (CELERY_TASK_ROUTES).
WORKER_QUEUES = ["indexing", "files", "triggers", "actions"]
# Beat sends a heartbeat task to every queue this often; /api/v1/health fails a queue
# whose last heartbeat is older than HEALTH_HEARTBEAT_MAX_AGE (six missed ticks: a
# restart or a short backlog is not an outage, a dead worker pool is).
HEALTH_HEARTBEAT_INTERVAL = env.float("HEALTH_HEARTBEAT_INTERVAL", default=10.0)
HEALTH_HEARTBEAT_MAX_AGE = env.float("HEALTH_HEARTBEAT_MAX_AGE", default=60.0)
# Queue depth (messages waiting): the seed runbook's thresholds — "< 1000" healthy,
# "> 10,000" scale the workers. The actions queue itself is capped well below by
# ACTIONS_QUEUE_LIMIT (backpressure keeps the rest as rows).
HEALTH_QUEUE_WARN_DEPTH = env.int("HEALTH_QUEUE_WARN_DEPTH", default=1000)
HEALTH_QUEUE_FAIL_DEPTH = env.int("HEALTH_QUEUE_FAIL_DEPTH", default=10000)
# A chain fails health when its indexer is this far behind in time (not caught up for
# that long, or the head not read for that long: poller down, RPC down) ...
HEALTH_CHAIN_MAX_LAG_SECONDS = env.float("HEALTH_CHAIN_MAX_LAG_SECONDS", default=300.0)
# ... or, when set (> 0), this many blocks behind the head.
HEALTH_CHAIN_MAX_LAG_BLOCKS = env.int("HEALTH_CHAIN_MAX_LAG_BLOCKS", default=0)
# An indexed event still not evaluated after this long, or a due delivery still not
# attempted after this long, means that stage is stuck (incidents 2 and 4).
HEALTH_EVALUATION_MAX_DELAY_SECONDS = env.float("HEALTH_EVALUATION_MAX_DELAY_SECONDS", default=120.0)
HEALTH_DELIVERY_MAX_DELAY_SECONDS = env.float("HEALTH_DELIVERY_MAX_DELAY_SECONDS", default=300.0)
# /metrics is open by default (keep it on a private network); set a token to require
# "Authorization: Bearer <token>" from the scraper (deploy/prometheus/prometheus.yml).
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
# Per-destination breaker series on /metrics: every destination up to this many;
# beyond it only the ones not closed (the alert needs those, not thousands of zeros).
METRICS_DESTINATION_SERIES_MAX = env.int("METRICS_DESTINATION_SERIES_MAX", default=500)
# Serve /static/ (the admin's CSS and JS) from STATIC_ROOT through Django: the
# embedded default and small deployments have no reverse proxy in front. Turn it off
# when one serves STATIC_ROOT itself (docs/deploy.md).
SERVE_STATIC = env.bool("SERVE_STATIC", default=True)
# The triggers sweeper (the runbook's "polling fallback"): how often it looks for
# events whose evaluation message was lost, and how old such an event must be (longer
# than a normal evaluation takes, so it never races the fast path).
TRIGGERS_SWEEP_INTERVAL = env.float("TRIGGERS_SWEEP_INTERVAL", default=15.0)
TRIGGERS_SWEEP_GRACE_SECONDS = env.int("TRIGGERS_SWEEP_GRACE_SECONDS", default=30)

# Each process names its PostgreSQL connections after its role (web, worker-actions,
# beat, migrate…), so pg_stat_activity answers "who holds the connections?"
# (runbook, incident 3) and a drain can check that the web has let go.
DATABASE_APPLICATION_NAME = env.str("DATABASE_APPLICATION_NAME", default=_logs.process_role(sys.argv))
if not IS_SQLITE:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("application_name", DATABASE_APPLICATION_NAME[:63])

CELERY_BEAT_SCHEDULE["triggers-sweep-evaluations"]["schedule"] = TRIGGERS_SWEEP_INTERVAL
CELERY_BEAT_SCHEDULE["triggers-sweep-evaluations"]["options"]["expires"] = max(30.0, 2 * TRIGGERS_SWEEP_INTERVAL)
for _queue in WORKER_QUEUES:
    # Sent to each queue explicitly (erc8004.* has no route), so each proves its own consumer.
    CELERY_BEAT_SCHEDULE[f"erc8004-heartbeat-{_queue}"] = {
        "task": "erc8004.tasks.heartbeat",
        "schedule": HEALTH_HEARTBEAT_INTERVAL,
        "args": (_queue,),
        "options": {"queue": _queue, "expires": HEALTH_HEARTBEAT_INTERVAL * 3},
    }

#
# Logging (operations, issue 6; erc8004/logs.py)
#

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one JSON object per line, for log shippers (Loki, CloudWatch, jq); plain: the
# same records for people. Production defaults to json, everything else to plain.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if ENVIRONMENT == "production" else "plain")
# Celery's per-task lines ("received", "succeeded in") cost two lines per delivery;
# off unless asked for (Flower and /metrics count tasks anyway).
LOG_TASK_EVENTS = env.bool("LOG_TASK_EVENTS", default=False)
LOGGING = _logs.logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL, task_events=LOG_TASK_EVENTS)
_logs.structlog_configure()
# django-structlog: RequestIdMiddleware (erc8004/logs.py) has already replaced an
# insane incoming X-Request-ID, so the header can be trusted from here on.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_CELERY_DEFAULT_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_CELERY_TASK_FAILURE_LOG_LEVEL = logging.WARNING
DJANGO_STRUCTLOG_COMMAND_LOGGING_ENABLED = False

#
# Production guard rails
#

if ENVIRONMENT == "production":
    if SECRET_KEY.startswith("dev-only") or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set to a random value of 32+ characters in production")
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off in production")
    if not SECRETS_ENCRYPTION_KEYS:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS must be set in production (comma-separated Fernet keys; the first encrypts)"
        )
    if (
        len(JWT_SECRET) < 32
        or JWT_SECRET.lower() in JWT_WEAK_SECRETS
        or len(set(JWT_SECRET)) < 10
        or JWT_SECRET == SECRET_KEY
    ):
        raise ImproperlyConfigured(
            "JWT_SECRET must be set in production to a random value of 32+ characters, distinct from "
            'DJANGO_SECRET_KEY (generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
