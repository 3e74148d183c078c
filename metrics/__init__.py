"""Prometheus metrics of hotplug-agent: definitions (one place for every series) and exposition."""

from metrics.definitions import HotplugMetrics, phase_durations
from metrics.exposition import render

__all__ = ["HotplugMetrics", "phase_durations", "render"]
