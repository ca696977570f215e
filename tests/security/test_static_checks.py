"""The static checks that `make test` runs, and production settings that pass Django's
deployment checklist: each runs the real tool in a subprocess, as CI and an operator do."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CODE = ["migrator", "jobs", "accounts", "reports"]


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def test_bandit_finds_no_high_severity_issue():
    done = run(str(BIN / "bandit"), "-q", "-c", "pyproject.toml", "-r", *CODE, "-lll",
               "-f", "custom", "--msg-template", "{abspath}:{line}: {test_id} {msg}")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_bandit_would_fail_on_a_high_severity_issue(tmp_path):
    """The gate is real: the same command fails on code with a high-severity issue."""
    bad = tmp_path / "bad.py"
    bad.write_text("import subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n")
    done = run(str(BIN / "bandit"), "-q", "-c", "pyproject.toml", "-r", str(tmp_path), "-lll")
    assert done.returncode == 1 and "B602" in done.stdout


def test_ruff_security_rules_are_selected_and_clean():
    done = run(str(BIN / "ruff"), "check", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout
    # the project's own selection has S: the same `ruff check` flags shell=True in app code
    probe = subprocess.run(
        [str(BIN / "ruff"), "check", "--stdin-filename", "jobs/probe.py", "-"],
        input="import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n",
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 1 and "S602" in probe.stdout, probe.stdout


def production_env(**overrides: str) -> dict[str, str]:
    """What README "Production" tells an operator to set, and no development fallback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATOR_", "DJANGO_"))}
    env.update(
        MIGRATOR_DEV="0",
        MIGRATOR_ENV_FILE="",  # a server has no checkout .env with development keys
        DJANGO_SETTINGS_MODULE="migrator.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        MIGRATOR_FERNET_KEYS=Fernet.generate_key().decode(),
        DJANGO_ALLOWED_HOSTS="migrator.example.test",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://migrator.example.test",
        EMAIL_HOST="smtp.example.test",
        DATABASE_URL=f"sqlite:///{tempfile.gettempdir()}/migrator-deploy-check.sqlite3",
    )
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return run(sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING",
               env=env)  # fmt: skip


def test_check_deploy_is_clean_with_production_settings():
    done = check_deploy(production_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_check_deploy_fails_when_production_turns_https_off():
    """The check above can fail: without HTTPS the same command names what is wrong."""
    done = check_deploy(production_env(MIGRATOR_HTTPS="0"))
    assert done.returncode != 0
    assert "security.W012" in done.stderr + done.stdout  # SESSION_COOKIE_SECURE


def test_production_without_a_secret_key_names_the_variable():
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    done = check_deploy(env)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr
