"""Deployment defaults: with DEBUG off, HTTPS is assumed and ``check --deploy`` is
clean; ``ALLOW_HTTP=1`` turns the HTTPS settings off (issue: 4 deploy warnings).

Each case runs the shop's own settings in a fresh interpreter, as production does."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

from tests.support.processes import ROOT

SETTINGS = ["SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER",
            "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"]


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "DJANGO_")) and k != "ALLOW_HTTP"}
    env.update(DJANGO_SETTINGS_MODULE="shop.settings", DEBUG="0",
               SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="shop.example.com")
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def https_settings(env: dict[str, str]) -> dict:
    script = ("import django, json; django.setup(); from django.conf import settings; "
              f"print(json.dumps({{k: getattr(settings, k) for k in {SETTINGS!r}}}))")
    result = run(["-c", script], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_check_deploy_is_clean_with_debug_off_and_a_real_secret():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_off_assumes_https():
    assert https_settings(production_env()) == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }


def test_allow_http_turns_the_https_settings_off():
    assert https_settings(production_env(ALLOW_HTTP="1")) == {
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }
