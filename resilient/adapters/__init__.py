"""Observability adapters: plug the event bus into logging, structlog, Prometheus, OpenTelemetry.

Each adapter is one class with ``.attach(bus=None) -> Subscription``:

- :class:`~resilient.adapters.logging.LoggingAdapter` (stdlib ``logging``),
- :class:`~resilient.adapters.structlog.StructlogAdapter`,
- :class:`~resilient.adapters.prometheus.PrometheusAdapter`,
- :class:`~resilient.adapters.opentelemetry.OpenTelemetryAdapter` (metrics and traces).

Importing this package imports no optional dependency; each adapter imports
its own (``structlog``, ``prometheus_client``, ``opentelemetry``) when it is
created, and raises an :class:`ImportError` naming the extra to install
(``pip install 'resilient-policies[prometheus]'``) if it is missing.
"""

from __future__ import annotations

from resilient.adapters.logging import LoggingAdapter
from resilient.adapters.opentelemetry import OpenTelemetryAdapter
from resilient.adapters.prometheus import PrometheusAdapter
from resilient.adapters.structlog import StructlogAdapter

__all__ = ["LoggingAdapter", "OpenTelemetryAdapter", "PrometheusAdapter", "StructlogAdapter"]
