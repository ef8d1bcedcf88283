"""The benchmark's own Django app: baselines and the "traditional" write-side history.

Installed only by the bench's own settings (``bench/settings.py``, ``bench/urls.py``),
so it never ships with the shop. Mounted at ``/bench/``.
"""
