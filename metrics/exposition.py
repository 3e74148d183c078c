"""Render a registry in the format the scraper asked for.

Why negotiate: exemplars (``{"vmi": "ns/name"}`` on duration histograms) exist only in the
OpenMetrics format, while plain Prometheus text is what older scrapers and ``curl`` expect.
Prometheus sends ``Accept: application/openmetrics-text;...`` when it can use OpenMetrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

#: Prometheus text format 0.0.4: understood by every Prometheus version (2.42 included).
PROMETHEUS_TEXT_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def wants_openmetrics(accept_header: str | None) -> bool:
    """True if the Accept header lists ``application/openmetrics-text`` with a non-zero q value."""
    if not accept_header:
        return False
    for part in accept_header.split(","):
        fields = [field.strip() for field in part.split(";")]
        if fields[0].lower() != "application/openmetrics-text":
            continue
        quality = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def render(registry: CollectorRegistry, accept_header: str | None = None) -> tuple[bytes, str]:
    """Serialise ``registry``; returns ``(body, content_type)`` for the HTTP response.

    Pass the content type through ``headers={"Content-Type": ...}`` in aiohttp: it carries a
    charset, which ``web.Response(content_type=...)`` rejects.
    """
    if wants_openmetrics(accept_header):
        # The OpenMetrics generator is untyped upstream.
        body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        return body, OPENMETRICS_CONTENT_TYPE
    return generate_latest(registry), PROMETHEUS_TEXT_CONTENT_TYPE
