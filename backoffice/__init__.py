"""The back office: Django's admin as the shop's staff use it.

It sits above both sides: it calls the write side's command services (through the
API's own input serializers) and reads the read models and the event store. Nothing
in ``catalog``, ``orders``, ``shipping`` or ``projections`` imports it.
"""
