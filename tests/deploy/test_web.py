"""The web process as deployed: /healthz for the probes, and gunicorn + whitenoise serving
the admin and its static files with the production settings (no dev mode, HTTPS on)."""

from __future__ import annotations

import http.client
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from migrator import health
from tests.servers.util import free_port, stop_group, wait_for_port

REPO = Path(__file__).resolve().parents[2]


# --- /healthz through Django's test client -------------------------------------------------


@pytest.mark.django_db
def test_healthz_answers_ok_without_login_for_any_host(client):
    # a kubelet asks by the pod's IP, which is in no ALLOWED_HOSTS
    response = client.get("/healthz", HTTP_HOST="10.8.0.17:8000")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert response["Cache-Control"] == "no-store"
    live = client.get("/healthz/live", HTTP_HOST="10.8.0.17:8000")
    assert (live.status_code, live.json()) == (200, {"process": "ok"})


@pytest.mark.django_db
def test_healthz_is_503_naming_the_database_and_no_secret(client, monkeypatch, caplog):
    def broken() -> None:
        raise OperationalError(
            'connection to server at "db.internal" failed: password=hunter2 rejected'
        )

    monkeypatch.setitem(health.CHECKS, "database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "error: OperationalError", "broker": "ok"}
    assert "hunter2" not in response.content.decode()
    assert "db.internal" not in response.content.decode()
    assert "hunter2" not in caplog.text
    # liveness does not depend on the database: the pod is not restarted for an outage
    assert client.get("/healthz/live").status_code == 200


@pytest.mark.django_db
def test_healthz_broker_table_missing_is_503(client, monkeypatch):
    from django_q.models import OrmQ

    def no_table(*args, **kwargs):
        raise OperationalError("no such table: django_q_ormq")

    monkeypatch.setattr(OrmQ.objects, "using", no_table)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "error: OperationalError"}


@pytest.fixture
def redis_port(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proc, timeout=10)
        yield port
    finally:
        stop_group(proc)


@pytest.mark.django_db
def test_healthz_pings_a_redis_broker(client, settings, redis_port):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": f"redis://127.0.0.1:{redis_port}/0"}
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"database": "ok", "broker": "ok"})

    # nothing listens there: 503 within the probe's few seconds, the URL not shown
    closed = free_port()
    settings.Q_CLUSTER = {
        **settings.Q_CLUSTER,
        "redis": f"redis://:s3cret-pw@127.0.0.1:{closed}/0",
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "error: ConnectionError"}
    assert "s3cret" not in response.content.decode()


# --- gunicorn, as the container runs it ----------------------------------------------------


def _db_url() -> str:
    """The test database, for a subprocess (file-backed SQLite, or PostgreSQL's)."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        return f"{os.environ['DATABASE_URL'].rsplit('/', 1)[0]}/{name}"
    return f"sqlite:///{name}"


def _get(port: int, path: str, host: str, **headers: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers={"Host": host, **headers})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_gunicorn_serves_healthz_admin_and_static_files(transactional_db, tmp_path):
    static_root = tmp_path / "static"
    secret_key = "test-only-" + "k" * 50
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="migrator.settings",
        MIGRATOR_ENV_FILE="",  # no checkout .env: the container has none
        MIGRATOR_DEV="0",
        MIGRATOR_DEBUG="0",
        DJANGO_SECRET_KEY=secret_key,
        MIGRATOR_FERNET_KEYS="ZGV2LW9ubHktZmVybmV0LWtleS0wMTIzNDU2Nzg5YWI=",
        DJANGO_ALLOWED_HOSTS="migrator.example.test",
        MIGRATOR_PROXY_COUNT="1",  # behind the load balancer, which terminates TLS
        DATABASE_URL=_db_url(),
        STATIC_ROOT=str(static_root),
        MIGRATOR_STATIC_MANIFEST="1",
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="2",
        PYTHONPATH=str(REPO),
    )
    if os.environ.get("MIGRATOR_TEST_STACK") != "postgres":
        env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=REPO, env=env, check=True, timeout=120,
    )  # fmt: skip
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    hashed_css = manifest["admin/css/base.css"]
    assert hashed_css != "admin/css/base.css"

    port = free_port()
    log = tmp_path / "gunicorn.log"
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is not installed in the test's environment"
    proc = subprocess.Popen(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "migrator.wsgi"],
        cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proc, timeout=60)
        # a probe: plain HTTP, the pod's address as Host; neither redirected nor refused
        status, headers, body = _get(port, "/healthz", f"127.0.0.1:{port}")
        assert (status, json.loads(body)) == (200, {"database": "ok", "broker": "ok"})

        # through the load balancer: HTTPS forwarded, the public host name
        https = {"X-Forwarded-Proto": "https"}
        status, headers, _ = _get(port, "/admin/login/", "migrator.example.test", **https)
        assert status == 302  # the admin signs in on the one login page
        login = headers["location"]
        assert login.startswith("/accounts/login/?next=")
        status, headers, body = _get(port, login, "migrator.example.test", **https)
        assert status == 200
        assert b'name="username"' in body
        # the page links its static files (htmx) by their hashed names, from the manifest
        linked = re.findall(rb'(?:src|href)="/static/([^"]+)"', body)
        assert linked and all(name.decode() in manifest.values() for name in linked)
        status, headers, _ = _get(port, f"/static/{linked[0].decode()}", "migrator.example.test",
                                  **https)  # fmt: skip
        assert status == 200

        status, headers, body = _get(port, f"/static/{hashed_css}", "migrator.example.test",
                                     **https)  # fmt: skip
        assert status == 200
        assert headers["content-type"].startswith("text/css")
        assert "max-age=315360000" in headers["cache-control"]  # hashed: cached for good
        assert b"--body-bg" in body or b"body" in body

        # plain http to the public name is sent to https (production settings are on)
        status, headers, _ = _get(port, "/admin/login/", "migrator.example.test")
        assert status == 301
        assert headers["location"] == "https://migrator.example.test/admin/login/"
    finally:
        stop_group(proc)
    output = log.read_text()
    assert '"GET /accounts/login/ HTTP/1.1" 200' in output  # the access log on stdout
    assert secret_key not in output


# --- deploy/gunicorn.conf.py ---------------------------------------------------------------


def _gunicorn_conf(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKERS", "GUNICORN_MAX_WORKERS", "GUNICORN_THREADS", "PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "deploy" / "gunicorn.conf.py"))


def test_gunicorn_workers_follow_the_containers_cpus(monkeypatch, tmp_path):
    conf = _gunicorn_conf(monkeypatch)
    cpus = conf["cpu_count"]()
    assert conf["workers"] == min(2 * cpus + 1, 8)
    assert (conf["worker_class"], conf["threads"], conf["bind"]) == ("gthread", 4, "0.0.0.0:8000")
    assert conf["accesslog"] == "-" and conf["control_socket_disable"] is True
    assert _gunicorn_conf(monkeypatch, GUNICORN_WORKERS="5")["workers"] == 5
    assert _gunicorn_conf(monkeypatch, GUNICORN_MAX_WORKERS="2")["workers"] == 2
    assert _gunicorn_conf(monkeypatch, PORT="9000")["bind"] == "0.0.0.0:9000"
    # a pod limited to 1.5 CPUs by its cgroup counts 2, whatever the node has
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert conf["cpu_count"](cpu_max) == 2
    cpu_max.write_text("max 100000\n")
    assert conf["cpu_count"](cpu_max) == len(os.sched_getaffinity(0))
    assert conf["cpu_count"](tmp_path / "none") == len(os.sched_getaffinity(0))
