"""The backlog is visible: /metrics gauges and a "degraded" /readyz while it is old or failing."""

from __future__ import annotations

import json
import os
import time

from traffic_platform.config import Settings
from traffic_platform.ingest.api import Request
from traffic_platform.ingest.local import LocalPlatform

from .jobs_factory import make_job


def _get(platform: LocalPlatform, path: str):
    response = platform.api().handle(Request("GET", path))
    return response.status, response.body.decode()


class _ModelProbe:
    def describe(self) -> dict[str, str]:
        return {"name": "stub"}


def test_old_backlog_and_transient_failures_make_readiness_degraded(tmp_path):
    settings = Settings(home=tmp_path, backlog_warn_minutes=10)
    with LocalPlatform(settings, run_worker=False, detector=_ModelProbe()) as platform:
        status, body = _get(platform, "/readyz")
        assert json.loads(body)["checks"]["spool"] | {"ok": True} == {"ok": True, "pending": 0, "dead": 0, "oldest_pending_age_s": 0.0}

        job = make_job(1)
        platform.spool.submit(job)
        eleven_minutes_ago = time.time() - 11 * 60
        os.utime(platform.spool.pending / f"{job.capture_id}.job", (eleven_minutes_ago,) * 2)
        status, body = _get(platform, "/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["ready"] is True and ready["status"] == "degraded"
        assert "oldest pending job is 660 s old" in ready["checks"]["spool"]["degraded"]
        assert ready["reasons"] and ready["reasons"][0].startswith("spool: ")

        status, text = _get(platform, "/metrics")
        gauges = dict(line.split(" ") for line in text.splitlines() if line.startswith("traffic_spool") or line.startswith("traffic_persist"))
        assert gauges["traffic_spool_pending"] == "1.0"
        assert 659 < float(gauges["traffic_spool_oldest_pending_age_seconds"]) < 700
        assert gauges["traffic_persist_transient_failures_streak"] == "0.0"

        os.utime(platform.spool.pending / f"{job.capture_id}.job")  # young again, but the store is down

        def down(*args, **kwargs):
            raise ConnectionRefusedError(111, "Connection refused")

        platform.store.put = down
        platform.worker.run_once()
        ready = json.loads(_get(platform, "/readyz")[1])
        assert ready["status"] == "degraded" and "failed transiently" in ready["checks"]["spool"]["degraded"]
        assert "ConnectionRefusedError" in ready["checks"]["spool"]["degraded"]

        del platform.store.put  # the store is back
        platform.spool.record_failure(job.capture_id, "x", 0)  # due now
        assert platform.worker.run_once() == 1
        ready = json.loads(_get(platform, "/readyz")[1])
        assert ready["status"] == "ok" and ready["reasons"] == []
