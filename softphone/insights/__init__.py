"""Insights: the call-quality events and metrics the JS SDK publishes, and their publisher.

* :mod:`softphone.insights.events`: pure builders of the exact JS records (envelope,
  default payload, one builder per event, metrics records and batching);
* :mod:`softphone.insights.endpoint`: the endpoint paths, the token header and how a
  Device picks where to publish (never twilio.com unless the app asks);
* :mod:`softphone.insights.publisher`: :class:`EventPublisher`, the background poster;
* :mod:`softphone.insights.call_reporter`: :class:`CallReporter`, one call's events and
  metrics batches through a Device's publisher.

The gateway's side (ingestion and storage per call) is
:mod:`softphone.gateway.insights_store` behind the REST API.
"""

from softphone.insights.call_reporter import CallReporter
from softphone.insights.events import CallInfo, InsightsEvent, Level, MetricsBatcher, SessionInfo
from softphone.insights.publisher import EventPublisher

__all__ = [
    "CallInfo",
    "CallReporter",
    "EventPublisher",
    "InsightsEvent",
    "Level",
    "MetricsBatcher",
    "SessionInfo",
]
