"""Helpers shared by test suites that run real processes (Redis, gunicorn, Celery)."""
