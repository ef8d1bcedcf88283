"""Demo data: ``manage.py seed_demo`` fills an empty shop through the command services.

An app of its own because it writes through every module (catalog, orders, shipping)
and then catches the projections up: the kernel ``shop`` imports no module, and no
module should import all the others.
"""
