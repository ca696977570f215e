# Set-up and everyday commands. `make run` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export MIGRATOR_DEV ?= 1

RUN_DEBS := python3-venv libldap2-dev libsasl2-dev gcc
TEST_DEBS := $(RUN_DEBS) samba samba-ad-dc samba-ad-provision smbclient winbind ldap-utils \
	acl attr slapd chromium postgresql redis-server rclone openssh-server

# pytest-xdist processes for the SQLite run, each test file in one of them: the suite
# mostly waits (on servers, workers, subprocesses), so 3 on 2 cores measured 11.5 min
# where one took 17-23. The PostgreSQL run stays in one process: one of its tests
# restarts the database server the others use. Tests marked shared_outage (they restart
# or cut the Samba DC all processes share) run after the others, alone.
TEST_PROCESSES ?= 3

# the job-execution tests, run a second time on PostgreSQL + Redis
PG_TESTS := tests/jobs/test_services.py tests/jobs/test_worker_kill.py tests/jobs/test_cli.py \
	tests/jobs/test_gcs_jobs.py tests/jobs/test_admin.py tests/jobs/test_multi_cluster.py \
	tests/jobs/test_delta_passes.py tests/jobs/test_delta_classify_sql.py tests/jobs/test_deletions.py

.PHONY: run test lint format system-run system-test venv demo worker web clean bench

define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "Please install (as root): apt-get install$$missing"; exit 1; fi; \
	fi
endef

system-run:
	$(call apt_install,$(RUN_DEBS))

system-test:
	$(call apt_install,$(TEST_DEBS))

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed .env

# this checkout's local settings (read by migrator/settings.py; never committed): dev
# mode and its own random keys, so the README's commands work as printed without make
.env:
	@$(PYTHON) -c 'import base64, os, secrets; print("# made by make: local development settings of this checkout (git ignores it)\nMIGRATOR_DEV=1\nDJANGO_SECRET_KEY=" + secrets.token_urlsafe(50) + "\nMIGRATOR_FERNET_KEYS=" + base64.urlsafe_b64encode(os.urandom(32)).decode())' > $@
	@echo "Wrote .env (dev mode, this checkout's own keys)"

run: system-run venv
	$(PY) manage.py migrate -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py migrator_demo
	@echo "Web: http://127.0.0.1:8000/admin/  — worker cluster started beside it; Ctrl-C stops both."
	@trap 'kill 0' INT TERM EXIT; \
	$(PY) manage.py qcluster & \
	$(PY) manage.py runserver 127.0.0.1:8000 --noreload

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Azurite (the Azure Blob emulator the tests start), pinned in package.json/package-lock.json.
# Node and npm from Debian only where there are none: the machine's own Node (20, whose
# package provides npm) conflicts with Debian's npm package
node_modules/.bin/azurite-blob: package.json package-lock.json | system-test
	@command -v npm >/dev/null || { echo "Installing Debian packages: nodejs npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: system-test venv node_modules/.bin/azurite-blob
	$(VENV)/bin/ruff check .
	$(VENV)/bin/bandit -q -c pyproject.toml -r migrator jobs accounts reports -lll
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile -m "not shared_outage" $(PYTEST_ARGS)
	@echo "--- the tests that take a shared server down, alone ---"
	$(PY) -m pytest -m shared_outage $(PYTEST_ARGS)
	@echo "--- the job-execution tests again on PostgreSQL + Redis ---"
	$(PY) -m tests.servers.stack -- $(PY) -m pytest $(PG_TESTS) $(PYTEST_ARGS)

bench: venv
	$(PY) bench/copy_bench.py

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles var test-artifacts
