"""Settings for the test suite: the shop's own, with a fast password hasher.

PBKDF2 costs about 0.3 s per user created or logged in; the tests check behaviour,
not password strength. Subprocesses the tests start (gunicorn, Celery) use this module
too, so a password hashed here verifies there, and so does ``ALLOW_HTTP``: the test
client and those servers speak plain HTTP.
"""

import os

# The tests (and the servers they start) speak plain HTTP.
os.environ.setdefault("ALLOW_HTTP", "1")
# The replay commands run inside the test process here: leave its CPU priority alone
# (the test of the priority runs the command in a process of its own, with its own).
os.environ.setdefault("PROJECTION_REBUILD_NICE", "0")
# Nor pace them (the default 0.5 would double every rebuild's time); the tests of the
# pacing ask for it themselves.
os.environ.setdefault("PROJECTION_REBUILD_DUTY_CYCLE", "1")

from shop.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
