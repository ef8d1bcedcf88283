"""The library's own contract tests for tracking recorders, run against ours."""

from django.test import TestCase
from eventsourcing.tests.persistence import TrackingRecorderTestCase

from projections.recorder import DjangoTrackingRecorder


class TestDjangoTrackingRecorder(TrackingRecorderTestCase, TestCase):
    def create_recorder(self) -> DjangoTrackingRecorder:
        return DjangoTrackingRecorder("contract-test")


del TrackingRecorderTestCase  # collected only through our subclass
