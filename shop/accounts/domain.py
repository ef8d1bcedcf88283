"""A customer in the event log: a stream of its own only once it is forgotten.

Orders name their customer by user id; the personal data in them is sealed with the
customer's own key (``shop.personal_data``). Forgetting a customer destroys that key (a
tombstone takes its place) and appends ``Customer.Forgotten`` to the customer's stream
(its first event), so the read models learn of it through the log like of anything else.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

CUSTOMER_NAMESPACE = uuid5(NAMESPACE_URL, "https://shop.example/customer")


def customer_id_for(user_id: int) -> UUID:
    return uuid5(CUSTOMER_NAMESPACE, str(user_id))


class Customer(Aggregate):
    class Forgotten(Aggregate.Created):
        user_id: int

    @staticmethod
    def create_id(user_id: int) -> UUID:
        return customer_id_for(user_id)

    @event(Forgotten)
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    @classmethod
    def forget(cls, user_id: int) -> Customer:
        return cls(user_id=user_id)
