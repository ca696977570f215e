"""gunicorn settings for the web process (the container's CMD reads this file).

Everything from the environment, nothing secret here; gunicorn logs no environment.
  GUNICORN_WORKERS      processes; default 2 x CPUs + 1, capped by GUNICORN_MAX_WORKERS (8)
  GUNICORN_THREADS      threads per process (gthread), default 4
  GUNICORN_TIMEOUT      seconds a worker may stay silent before it is restarted, default 120
  GUNICORN_KEEPALIVE    seconds an idle client connection is kept, default 620
  PORT                  the port to listen on, default 8000 (all interfaces: a pod's IP)
"""

from __future__ import annotations

import os
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def cpu_count(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this container may use: its cgroup's quota if set, else the CPUs it may run on.
    os.cpu_count() alone tells the node's, and a pod on a 32-core node would start 65."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            return max(1, -(-int(quota) // int(period)))  # round up: 1.5 CPUs -> 2
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0))


bind = f"0.0.0.0:{_int('PORT', 8000)}"
workers = _int("GUNICORN_WORKERS", 0) or min(2 * cpu_count() + 1, _int("GUNICORN_MAX_WORKERS", 8))
# gthread: a worker's main loop keeps beating while its threads stream a long CSV, so a
# 10-million-row report is not killed at `timeout` as it would be under the sync worker.
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = 30
# above Google Cloud load balancers' 600 s backend keep-alive, so the balancer never reuses
# a connection that gunicorn has just closed (a 502 otherwise)
keepalive = _int("GUNICORN_KEEPALIVE", 620)
# a worker that has served this many requests is replaced (bounds slow leaks)
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = max_requests // 10
# heartbeat files in memory (gunicorn's own advice): the container's root is read only
_SHM = "/dev/shm"  # noqa: S108 - only the workers' heartbeat files, no data
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
# the control socket would be written under $HOME, read only in the container
control_socket_disable = True
# access and error logs to stdout/stderr, where Kubernetes collects them. %(U)s is the
# path without its query string; no header is logged (tokens travel in Authorization).
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
proc_name = "migrator-web"
