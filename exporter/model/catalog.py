"""The metric catalog: every stream and app-level family a provider may produce.

A `Sample` is checked against it when it is made, so a provider that misspells a metric
fails its own poll, never the rendering of every other family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricDef:
    type: Literal["gauge", "counter"]
    help: str
    extra_labels: tuple[str, ...] = ()
    #: per source (`provider`, `source`) rather than per stream
    app_level: bool = False


STREAM_LABELS = ("provider", "source", "stream")
SOURCE_LABELS = ("provider", "source")

#: counter names carry `_total`, as they appear in the text format
CATALOG: dict[str, MetricDef] = {
    "livestream_concurrent_viewers": MetricDef(
        "gauge", "Viewers watching now (latest interval or point the vendor reports)."
    ),
    "livestream_peak_concurrent_viewers": MetricDef(
        "gauge", "Highest concurrent viewers the vendor reports for the stream."
    ),
    "livestream_unique_viewers": MetricDef(
        "gauge", "Distinct viewers of the stream over the vendor's reporting period."
    ),
    "livestream_viewers_total": MetricDef("counter", "Cumulative viewers of the stream."),
    "livestream_messages_total": MetricDef("counter", "Chat messages sent in the stream."),
    "livestream_instructor_messages_total": MetricDef("counter", "Chat messages sent by instructors."),
    "livestream_polls_total": MetricDef("counter", "Audience polls conducted in the stream."),
    "livestream_likes_total": MetricDef("counter", "Likes received by the stream."),
    "livestream_gifts_total": MetricDef("counter", "Gifts sent to the stream."),
    "livestream_gift_coins_total": MetricDef("counter", "Value of the gifts sent to the stream, in coins."),
    "livestream_gift_senders": MetricDef("gauge", "Distinct viewers who sent gifts."),
    "livestream_viewer_seconds_total": MetricDef(
        "counter", "Watch time of the current session summed over viewers, in seconds."
    ),
    "livestream_ingest_seconds_total": MetricDef(
        "counter", "Ingest time of the current session, in seconds."
    ),
    "livestream_duration_seconds": MetricDef("gauge", "Duration of the stream so far, in seconds."),
    "livestream_started_timestamp_seconds": MetricDef("gauge", "When the stream started, in Unix seconds."),
    "livestream_ended_timestamp_seconds": MetricDef("gauge", "When the stream ended, in Unix seconds."),
    "livestream_live": MetricDef("gauge", "Whether the stream is live (1) or not (0)."),
    "livestream_status": MetricDef(
        "gauge", "The stream's status: 1 for the current one, 0 for the others.", ("status",)
    ),
    "livestream_data_timestamp_seconds": MetricDef(
        "gauge", "Time of the vendor's data point the values come from, in Unix seconds."
    ),
    "livestream_stream_info": MetricDef("gauge", "Descriptive labels of the stream; always 1.", ("name",)),
    "livestream_app_livestreams": MetricDef(
        "gauge", "Livestreams of the app, as the vendor counts them.", app_level=True
    ),
    "livestream_app_viewer_seconds_total": MetricDef(
        "counter", "Watch time over all livestreams of the app, in seconds.", app_level=True
    ),
    "livestream_app_ingest_seconds_total": MetricDef(
        "counter", "Ingest time over all livestreams of the app, in seconds.", app_level=True
    ),
}
