"""The library's own contract tests for tracking recorders, run against ours."""

from django.test import TestCase
from eventsourcing.tests.persistence import TrackingRecorderTestCase

from projections.recorder import DjangoTrackingRecorder


class TestDjangoTrackingRecorder(TrackingRecorderTestCase, TestCase):
    """The library's contract, on the read database (its own when READ_DATABASE_URL is
    set: then ``read`` is another database than ``default``)."""

    databases = {"default", "read"}

    def create_recorder(self) -> DjangoTrackingRecorder:
        return DjangoTrackingRecorder("contract-test")


del TrackingRecorderTestCase  # collected only through our subclass
