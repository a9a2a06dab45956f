"""Production settings: DEBUG off by default, `check --deploy` clean, var/ private, .env bootstrap and example."""

from __future__ import annotations

import importlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import environ
import pytest

from project import envfile
from tokens.keyring import generate_key

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _production_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DEBUG="false",
        SECRET_KEY="a-long-random-production-signing-key-0123456789-abcdefghijk",
        ENCRYPTION_KEYS=generate_key("k1"),
        VAR_DIR=str(var_dir),
    )
    return {**env, **extra}


def test_it_passes_check_deploy_with_debug_off_and_keeps_var_private(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)  # as an older version left it
    (var / "db.sqlite3").touch(mode=0o644)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(var),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    assert _mode(var) == 0o700
    for folder in ("mail", "static", "broker/queue", "broker/control", "broker/processed"):
        assert _mode(var / folder) == 0o700, folder
    assert _mode(var / "db.sqlite3") == 0o600

    with sqlite3.connect(var / "db.sqlite3") as db:  # SQLite gives its side files the database's mode
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        assert _mode(var / "db.sqlite3-wal") == 0o600


def test_it_refuses_to_start_without_secrets_when_debug_is_off(tmp_path):
    env = _production_env(tmp_path / "var", SECRET_KEY="", ENCRYPTION_KEYS="")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


@pytest.fixture
def reload_settings(monkeypatch, tmp_path):
    """Evaluate project/settings.py again under a given environment, without any .env file."""
    import project.settings

    monkeypatch.setattr(environ.Env, "read_env", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))

    def load(**variables: str):
        for name in ("DEBUG", "SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(project.settings)

    yield load
    monkeypatch.undo()
    importlib.reload(project.settings)


def test_it_defaults_to_debug_off_and_production_security(reload_settings):
    loaded = reload_settings(SECRET_KEY="x" * 60, ENCRYPTION_KEYS=generate_key("k1"))
    assert loaded.DEBUG is False
    assert loaded.SECURE_SSL_REDIRECT is True
    assert loaded.SECURE_HSTS_SECONDS >= 31536000
    assert loaded.SESSION_COOKIE_SECURE and loaded.CSRF_COOKIE_SECURE
    assert loaded.FORWARDED_ALLOW_IPS == []
    assert loaded.EMAIL_BACKEND == "django.core.mail.backends.filebased.EmailBackend"


def test_it_treats_empty_variables_as_unset(reload_settings):
    empty = {name: "" for name in _example_names() if name not in ("DEBUG",)}
    loaded = reload_settings(DEBUG="true", **empty)
    assert loaded.PORT == 8000
    assert loaded.ALLOWED_HOSTS == ["127.0.0.1", "localhost"]
    assert loaded.SECRET_KEY.startswith("dev-only")  # development stand-in, never an empty key


def _example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))


def test_it_lists_every_setting_in_the_env_example():
    source = (ROOT / "project" / "settings.py").read_text()
    read = set(re.findall(r"""\benv(?:secret|\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    assert read, "found no settings read from the environment"
    assert read - _example_names() == set()


def test_it_writes_a_fresh_env_for_development(tmp_path):
    path = tmp_path / ".env"
    assert envfile.ensure_env_file(path) == ["DEBUG", "SECRET_KEY", "ENCRYPTION_KEYS"]
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    assert values["DEBUG"] == "true"
    assert len(values["SECRET_KEY"]) >= 50 and values["ENCRYPTION_KEYS"].startswith("k1:")
    assert _mode(path) == 0o600
    assert envfile.ensure_env_file(path) == []  # second run keeps everything


def test_it_fills_empty_secrets_of_a_copied_example_in_place(tmp_path):
    path = tmp_path / ".env"
    path.write_text((ROOT / ".env.example").read_text())
    path.chmod(0o644)
    assert envfile.ensure_env_file(path) == ["SECRET_KEY", "ENCRYPTION_KEYS"]
    lines = path.read_text().splitlines()
    assert not [line for line in lines if line in ("SECRET_KEY=", "ENCRYPTION_KEYS=")]
    assert sum(line.startswith("SECRET_KEY=") for line in lines) == 1
    assert len(lines) == len((ROOT / ".env.example").read_text().splitlines())
    assert _mode(path) == 0o600


def test_it_keeps_a_production_env_without_debug_as_it_is(tmp_path):
    path = tmp_path / ".env"
    path.write_text("SECRET_KEY=kept\nENCRYPTION_KEYS=k9:kept\n")
    assert envfile.ensure_env_file(path) == []
    assert path.read_text() == "SECRET_KEY=kept\nENCRYPTION_KEYS=k9:kept\n"
