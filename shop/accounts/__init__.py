"""Accounts: customers register and obtain API tokens (``/api/auth/``).

Users are Django's own ``auth.User``. ``services.py`` writes, ``apis.py`` holds the
thin views, ``urls.py`` the routes, ``authentication.py`` how a token is presented.
"""
