#!/usr/bin/env python
import getpass
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from shop.logs import bound
    from shop.metadata import new_request_id

    # A management command's log lines carry an id of their own and who ran it.
    with bound(request_id=new_request_id(), user=f"{getpass.getuser()} (manage.py)"):
        try:
            execute_from_command_line(sys.argv)
        except ImproperlyConfigured as missing:  # a setting to give: a sentence, no traceback
            sys.exit(f"manage.py: {missing}")


if __name__ == "__main__":
    main()
