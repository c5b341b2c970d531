"""gunicorn settings for the cbm web processes.

    gunicorn --config deploy/gunicorn.conf.py 'cbm.web:create_app()'

Every value can be overridden by an environment variable (GUNICORN_*, or CBM_HOST/CBM_PORT
for the address) or on the command line. The web processes never run the scheduler or
migrations: run `cbm scheduler` and `cbm db upgrade` separately.
"""

import multiprocessing
import os

# Listen where CBM_HOST/CBM_PORT say (a reverse proxy such as nginx stands in front).
bind = os.environ.get(
    "GUNICORN_BIND",
    f"{os.environ.get('CBM_HOST', '127.0.0.1')}:{os.environ.get('CBM_PORT', '8000')}",
)
# Two workers per CPU: requests mostly wait on PostgreSQL.
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
worker_class = "gthread"
# Long exports and uploads stream; a worker silent for this long is restarted.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (bounded memory growth), staggered so they do not all restart.
max_requests = 2000
max_requests_jitter = 200
# Each worker builds its own app and database pool (no connection crosses a fork).
preload_app = False
# Behind a proxy: trust X-Forwarded-* from it only (also set CBM_TRUSTED_PROXIES=1).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

# Logs go to stderr (journald under systemd, the platform's log under a Procfile), in the
# cbm format (CBM_LOG_FORMAT=text|json); every line of a request, the access line included,
# carries its request id (the X-Request-ID response header).
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("CBM_LOG_LEVEL", "info").lower()
logger_class = "cbm.web.gunicorn_logging.GunicornLogger"
# client, user, request line, status, bytes, duration in ms, referrer, user agent.
access_log_format = '%(h)s %(u)s "%(r)s" %(s)s %(B)s %(M)sms "%(f)s" "%(a)s"'
proc_name = "cbm-web"
