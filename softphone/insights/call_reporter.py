"""One call's insights: its events with its current ids, its metrics in batches of 10.

What: the glue a ``Call`` needs, so each JS publish site is one line
(``reporter.publish(events.muted(True))``): :class:`CallReporter` takes the call's ids
when each event is published (a CallSid learnt later shows up in later events), keeps
the samples and posts a metrics batch every :data:`~softphone.insights.events.METRICS_BATCH_SIZE`
samples and the rest when media closes (:meth:`CallReporter.media_closed`), with the
fields JS adds to each record.

Why separate: the Call's state machine stays free of batching and payload details,
and a Device without a publisher gets a reporter that does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from softphone.insights.events import (
    METRICS_GROUP,
    METRICS_NAME,
    CallInfo,
    InsightsEvent,
    MetricsBatcher,
    metrics_fields,
)
from softphone.insights.publisher import EventPublisher

__all__ = ["CallReporter"]

log = logging.getLogger("softphone.insights")


class CallReporter:
    """Publishes one call's events and metrics through a Device's publisher (or nowhere).

    ``call_info()`` is asked at each publish for the call's ids, direction and codec.
    ``sdk_version``, ``dscp`` and ``gateway`` go into every metrics record (JS
    ``Call._createMetricPayload``).
    """

    def __init__(
        self,
        publisher: EventPublisher | None,
        call_info: Callable[[], CallInfo],
        *,
        sdk_version: str,
        dscp: bool = True,
        gateway: str | None = None,
    ) -> None:
        self.publisher = publisher
        self._call_info = call_info
        self._sdk_version = sdk_version
        self._dscp = dscp
        self._gateway = gateway
        self._batcher = MetricsBatcher()

    def publish(self, event: InsightsEvent | None) -> bool:
        """Queue ``event`` with the call's current ids; None (nothing to publish) is fine."""
        if event is None or self.publisher is None:
            return False
        return self.publisher.publish(event, self._info())

    def sample(self, sample: Mapping[str, Any], input_volume: float, output_volume: float) -> None:
        """Keep one JS sample (``RTCSample.to_dict()``) with the latest 0..1 volumes; post
        the batch once it holds 10."""
        batch = self._batcher.add(sample, input_volume, output_volume)
        if batch is not None:
            self._post(batch)

    def media_closed(self) -> None:
        """Post the samples not posted yet (JS ``_publishMetrics`` on media close)."""
        batch = self._batcher.drain()
        if batch:
            self._post(batch)

    def _post(self, batch: list[dict[str, Any]]) -> None:
        if self.publisher is None:
            return
        info = self._info()
        fields = metrics_fields(
            call_sid=info.call_sid,
            dscp=self._dscp,
            sdk_version=self._sdk_version,
            direction=info.direction or "",
            gateway=self._gateway,
        )
        self.publisher.post_metrics(METRICS_GROUP, METRICS_NAME, batch, fields, info)

    def _info(self) -> CallInfo:
        try:
            return self._call_info()
        except Exception:  # telemetry never breaks a call
            log.exception("insights: cannot read the call's ids")
            return CallInfo()
