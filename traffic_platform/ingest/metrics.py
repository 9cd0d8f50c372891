"""Prometheus-style metrics for the ingest API, without a client library."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict

BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Metrics:
    """Request counters by route/status/code and a latency histogram; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int, str], int] = defaultdict(int)
        self._buckets = [0] * (len(BUCKETS_MS) + 1)
        self._sum_ms = 0.0
        self._count = 0
        self._gauges: dict[str, callable] = {}

    def observe(self, route: str, status: int, code: str, elapsed_ms: float) -> None:
        with self._lock:
            self._requests[(route, status, code)] += 1
            self._buckets[bisect_left(BUCKETS_MS, elapsed_ms)] += 1
            self._sum_ms += elapsed_ms
            self._count += 1

    def gauge(self, name: str, read) -> None:
        """Register a gauge read at scrape time (e.g. the spool depth)."""
        self._gauges[name] = read

    def render(self) -> str:
        lines = ["# HELP traffic_requests_total API requests by route, status and error code.", "# TYPE traffic_requests_total counter"]
        with self._lock:
            for (route, status, code), n in sorted(self._requests.items()):
                lines.append(f'traffic_requests_total{{route="{route}",status="{status}",code="{code}"}} {n}')
            lines += ["# HELP traffic_request_duration_ms Request latency.", "# TYPE traffic_request_duration_ms histogram"]
            cumulative = 0
            for bound, n in zip((*BUCKETS_MS, "+Inf"), self._buckets, strict=True):
                cumulative += n
                lines.append(f'traffic_request_duration_ms_bucket{{le="{bound}"}} {cumulative}')
            lines.append(f"traffic_request_duration_ms_sum {self._sum_ms:.3f}")
            lines.append(f"traffic_request_duration_ms_count {self._count}")
        for name, read in sorted(self._gauges.items()):
            try:
                value = float(read())
            except Exception:  # a broken gauge must not break the scrape
                continue
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
