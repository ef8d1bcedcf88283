"""The benchmark's own Django app: baselines and the "traditional" write-side history.

Installed only when ``SHOP_BENCH=1`` (see ``shop/settings.py`` and ``shop/urls.py``),
so it never ships with the shop. Mounted at ``/bench/``.
"""
