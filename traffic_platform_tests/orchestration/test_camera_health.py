"""Camera health end to end: generated scenarios with known problems through the real repository,
object store and Dagster assets on SQLite and MariaDB (precision and recall >= 0.95 per state),
the exclusion of frozen and slate frames from the counts, the checks, and the webhook alerts
delivered once per episode start and end to a real HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
from sqlalchemy import text

from traffic_platform.config import Settings
from traffic_platform.orchestration.assets.camera_health import camera_health
from traffic_platform.orchestration.checks.camera_health import camera_health_checks
from traffic_platform.orchestration.health.alerts import camera_health_alerts_sensor, deliver
from traffic_platform.orchestration.health.features import features_of_grey, image_features
from traffic_platform.orchestration.health.rules import (
    Frame,
    HealthThresholds,
    episodes,
    flag_frames,
    offline_episodes,
)
from traffic_platform.orchestration.resources import DatabaseResource, ObjectStoreResource
from traffic_platform.orchestration.sql.view_files import apply_views, load_views
from traffic_platform.storage.objectstore import open_object_store

from . import health_scenarios as hs
from .conftest import PARTITIONS, REPORTING_ASSETS

T = HealthThresholds()
T0 = datetime(2022, 10, 12, 8, 0)


# -- the rules, directly --------------------------------------------------------------------

def _frames(n: int, **overrides) -> list[Frame]:
    out = []
    for i in range(n):
        at = T0 + timedelta(minutes=5 * i)
        values = dict(capture_id=f"c{i}", arrived_at=at + timedelta(seconds=5), captured_at_utc=at,
                      content_sha256=f"sha{i}", dhash=(0x0F0F0F0F0F0F0F0F ^ (i * 0x1111)) & (2**64 - 1),
                      thumb=bytes([(i * 7 + j) % 256 for j in range(144)]), uniform_share=0.1,
                      repeated_line_share=0.1, sharpness=0.2)
        values.update({k: v(i) if callable(v) else v for k, v in overrides.items()})
        out.append(Frame(**values))
    return out


def test_frozen_needs_a_chain_of_repeats():
    frames = _frames(10, content_sha256=lambda i: "same" if 3 <= i <= 6 else f"sha{i}")
    flags = flag_frames(frames, T)
    assert [i for i, f in enumerate(flags) if "frozen" in f.states] == [4, 5, 6]  # frame 3 is the last live one
    two = _frames(6, content_sha256=lambda i: "same" if i in (2, 3) else f"sha{i}")  # one repeat is not frozen
    assert not any("frozen" in f.states for f in flag_frames(two, T))


def test_slate_clock_drift_and_backlog():
    frames = _frames(12, uniform_share=lambda i: 0.95 if i == 5 else 0.1)
    assert [i for i, f in enumerate(flag_frames(frames, T)) if f.states] == [5]
    drift = _frames(14, arrived_at=lambda i: T0 + timedelta(minutes=5 * i, seconds=5 + (1500 if 4 <= i <= 8 else 0)))
    assert [i for i, f in enumerate(flag_frames(drift, T)) if "clock_drift" in f.states] == [4, 5, 6, 7, 8]
    # a replayed backlog (images arriving one second apart, long after their time) is not drift
    backlog = _frames(10, arrived_at=lambda i: T0 + timedelta(hours=5, seconds=i))
    assert not any("clock_drift" in f.states for f in flag_frames(backlog, T))


def test_moved_obstructed_and_offline():
    other = 0xF0F0F0F0F0F0F0F0
    frames = _frames(60, dhash=lambda i: other if i >= 20 else 0x0F0F0F0F0F0F0F0F ^ (i % 3),
                     sharpness=lambda i: 0.01 if 12 <= i <= 14 else 0.2)
    flags = flag_frames(frames, T)
    assert [i for i, f in enumerate(flags) if "obstructed" in f.states] == [12, 13, 14]
    moved = [i for i, f in enumerate(flags) if "moved" in f.states]
    assert moved == list(range(20, 20 + T.moved_rebase_frames))  # then the new scene is the reference
    found = episodes(frames, flags, T)
    assert [(e.state, e.started_at, e.ended_at) for e in found if e.state == "moved"] == [
        ("moved", frames[20].arrived_at, frames[20 + T.moved_rebase_frames].arrived_at)]
    arrivals = [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=30), T0 + timedelta(minutes=35)]
    gaps = offline_episodes(arrivals, [300.0] * 4, T0 + timedelta(minutes=45), T)
    assert [(e.started_at, e.ended_at) for e in gaps] == [(arrivals[1], arrivals[2])]
    assert offline_episodes(arrivals, [300.0] * 4, T0 + timedelta(minutes=55), T)[-1].ended_at is None


def test_features_tell_slates_and_repeats_from_street_frames():
    import numpy as np

    street = image_features(hs._jpeg(hs._live(hs.street_scene(*hs.SIZE, seed=3), np.random.default_rng(1))))
    for slate in (hs.no_signal(), hs.colour_bars()):
        f = image_features(hs._jpeg(slate))
        assert f.uniform_share >= T.slate_uniform_share or f.repeated_line_share >= T.slate_repeated_lines
    assert street.uniform_share < T.slate_uniform_share and street.repeated_line_share < T.slate_repeated_lines
    flat = features_of_grey(np.full((36, 64), 90, dtype=np.uint8))
    assert flat.uniform_share == 1.0 and flat.repeated_line_share == 1.0


# -- the scenarios, through Dagster ---------------------------------------------------------

HEALTH_CHECKS = camera_health_checks(PARTITIONS)


def _run_scenario(db_url: str, tmp_path, repo):
    uri = f"file://{tmp_path / 'objects'}"
    store = open_object_store(Settings(object_store_uri=uri))
    scenario = hs.generate(repo, store)
    resources = {"database": DatabaseResource(url=db_url), "object_store": ObjectStoreResource(uri=uri)}
    result = dg.materialize([*REPORTING_ASSETS, HEALTH_CHECKS[2]], partition_key=hs.PARTITION, resources=resources)
    assert result.success
    return scenario, resources


def _health(resources, as_of: datetime) -> dg.ExecuteInProcessResult:
    return dg.materialize([camera_health, *HEALTH_CHECKS[:2]], resources=resources,
                          run_config={"ops": {"health__camera_health": {"config": {"as_of": as_of.isoformat()}}}})


def _episodes(engine) -> list[dict]:
    from sqlalchemy import select

    from traffic_platform.orchestration.sql.reporting_tables import camera_health as table

    with engine.connect() as conn:
        rows = conn.execute(select(table.c.location_id, table.c.state, table.c.started_at, table.c.ended_at,
                                   table.c.reason, table.c.evidence)
                            .order_by(table.c.location_id, table.c.state, table.c.started_at)).mappings().all()
    return [dict(r) for r in rows]


def _excluded_by_the_counts_api(engine) -> dict[int, int]:
    """location_id -> images_excluded_health summed over the location's daily rows of GET /v1/counts
    (one class's rows, one model: the figure repeats on every class)."""
    from traffic_platform.ingest.api import Request
    from traffic_platform.ingest.counts_api import CountsApi
    from traffic_platform.storage.counts import CountsReader

    api = CountsApi(CountsReader(engine))

    with engine.connect() as conn:
        first, last = conn.execute(text("SELECT MIN(date), MAX(date) FROM v_data_quality_daily")).one()
        ids = {tuple(place): i for i, *place in conn.execute(text("SELECT id, address_display, city, country FROM locations"))}
    out: Counter[int] = Counter()
    days = {"from": str(first)[:10], "to": str(last)[:10]}
    response = api.handle(Request("GET", "/v1/counts", {"window": "day", **days, "class": "car"}, {}), "/v1/counts")
    assert response.status == 200, response.body[:300]
    counted = json.loads(response.body)["rows"]
    assert len({r["model_version"] for r in counted}) == 1
    for r in counted:
        out[ids[(r["address"], r["city"], r["country"])]] += r["images_excluded_health"]
    return dict(out)


def test_scenarios_precision_recall_and_exclusion(db_url, engine, repo, tmp_path, capsys):
    scenario, resources = _run_scenario(db_url, tmp_path, repo)
    result = _health(resources, scenario.as_of)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["camera_health_consistent"].passed and checks["camera_health_no_open_problems"].passed
    found = _episodes(engine)
    scores = hs.score(scenario, found)
    with capsys.disabled():
        print("\n" + hs.format_scores(scores, engine.dialect.name))
    for s in scores.values():
        assert s.truth > 0, s.state
        assert s.precision >= 0.95 and s.recall >= 0.95, s
    assert all(r["reason"] and json.loads(r["evidence"]) for r in found)
    # recomputing changes nothing
    assert _health(resources, scenario.as_of).success
    assert _episodes(engine) == found

    # frozen and slate frames are out of the counts, and the data-quality view says how many
    with engine.begin() as conn:
        apply_views(conn, load_views())
        excluded = {cid for (cid,) in conn.execute(text("SELECT capture_id FROM capture_features WHERE excluded = 1"))}
        quality = dict(conn.execute(text("SELECT location_id, images_excluded_health FROM v_data_quality_daily")).all())
        totals = dict(conn.execute(text("SELECT location_id, SUM(total_count) FROM traffic_counts_daily GROUP BY location_id")).all())
        accepted = dict(conn.execute(text(
            "SELECT location_id, MAX(images_accepted) FROM traffic_counts_daily GROUP BY location_id")).all())
    truth_excluded = scenario.excluded()
    assert len(excluded & truth_excluded) >= 0.95 * max(len(excluded), len(truth_excluded))
    for li, location_id in scenario.location_ids.items():
        mine = [r for r in scenario.records if scenario.location_of[r.capture_id] == li and r.status == "accepted"]
        kept = [r for r in mine if r.capture_id not in excluded]
        assert quality[location_id] == len(mine) - len(kept)
        assert accepted[location_id] == len(kept)
        assert totals[location_id] == sum(len(r.detections) for r in kept)
    assert sum(quality.values()) > 0
    assert _excluded_by_the_counts_api(engine) == quality  # and the analysts' API says the same

    # a day later every camera is silent: open offline episodes, and the warning check says so
    late = _health(resources, scenario.as_of + timedelta(hours=3))
    warn = {e.check_name: e for e in late.get_asset_check_evaluations()}["camera_health_no_open_problems"]
    assert not warn.passed and warn.metadata["open_problems"].value == len(hs.LOCATIONS)


def test_consistency_check_fails_on_overlaps(engine):
    from traffic_platform.orchestration.checks.camera_health import check_health_consistent
    from traffic_platform.orchestration.sql.reporting_tables import ensure_reporting_tables

    ensure_reporting_tables(engine)
    with engine.begin() as conn:
        assert check_health_consistent(conn).passed
        for start, end in ((T0, T0 + timedelta(hours=1)), (T0 + timedelta(minutes=30), None)):
            conn.execute(text("INSERT INTO camera_health (location_id, state, started_at, ended_at, reason, evidence,"
                              " computed_at) VALUES (1, 'frozen', :s, :e, 'r', '{}', :s)"), {"s": start, "e": end})
        assert check_health_consistent(conn).metadata["overlapping"].value == 1


# -- alerts -----------------------------------------------------------------------------------

class Receiver:
    """A real HTTP server on 127.0.0.1 that records JSON bodies; answers 500 while ``failing``."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.failing = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 500 if owner.failing else 204
                if not owner.failing:
                    owner.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _tick(resources, instance, cursor):
    with dg.build_sensor_context(cursor=cursor, instance=instance,
                                 resources={"database": resources["database"]}) as context:
        result = camera_health_alerts_sensor(context)
    return result.cursor


def test_alerts_once_per_episode_start_and_end(db_url, engine, repo, tmp_path, monkeypatch):
    scenario, resources = _run_scenario(db_url, tmp_path, repo)
    with Receiver() as receiver, dg.DagsterInstance.ephemeral() as instance:
        monkeypatch.setenv("TRAFFIC_ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setattr("traffic_platform.orchestration.health.alerts.datetime", _FrozenNow(scenario.as_of))
        cursor = _tick(resources, instance, None)  # first tick: nothing to announce yet
        assert receiver.bodies == []
        midday = datetime(2022, 10, 12, 12, 20)  # UTC (14:20 local): some episodes over; a slate, a move, a drift open
        assert _health(resources, midday).success
        cursor = _tick(resources, instance, cursor)
        first = list(receiver.bodies)
        assert any(b["status"] == "started" and b["ended_at"] is None for b in first)
        assert any(b["status"] == "ended" for b in first)
        assert _tick(resources, instance, cursor) == cursor and receiver.bodies == first  # no resend
        assert _health(resources, scenario.as_of).success
        receiver.failing = True
        failed = _tick(resources, instance, cursor)
        assert receiver.bodies == first and failed == cursor  # nothing delivered, nothing recorded
        receiver.failing = False
        cursor = _tick(resources, instance, failed)
        cursor = _tick(resources, instance, cursor)
    delivered = Counter((b["episode"], b["status"]) for b in receiver.bodies)
    assert set(delivered.values()) == {1}
    stored = _episodes(engine)
    assert stored and all(r["ended_at"] is not None for r in stored)
    keys = {f"{r['location_id']}|{r['state']}|{r['started_at'].isoformat()}" for r in stored}
    assert {e for e, s in delivered if s == "ended"} == keys
    assert {e for e, s in delivered if s == "started"} == keys
    body = receiver.bodies[0]
    assert set(body) == {"location", "location_id", "state", "status", "started_at", "ended_at", "reason",
                         "evidence", "episode"}


def test_first_tick_does_not_replay_history():
    ended = {"location_id": 1, "address_display": "a", "city": "b", "country": "c", "state": "slate",
             "started_at": T0, "ended_at": T0 + timedelta(minutes=10), "reason": "r", "evidence": "{}"}
    open_ = ended | {"state": "offline", "ended_at": None}
    sent: list[dict] = []
    cursor, figures = deliver([ended, open_], None, sent.append)
    assert [(b["state"], b["status"]) for b in sent] == [("offline", "started")]
    closed = open_ | {"ended_at": T0 + timedelta(hours=1)}
    deliver([ended, closed], cursor, sent.append)
    assert [(b["state"], b["status"]) for b in sent] == [("offline", "started"), ("offline", "ended")]


class _FrozenNow:
    """``datetime`` as the alerts module sees it, with ``now()`` fixed (the scenario lives in 2022)."""

    def __init__(self, now: datetime):
        self._now = now

    def now(self, tz=None):
        return self._now.replace(tzinfo=tz) if tz else self._now

    def __getattr__(self, name):
        return getattr(datetime, name)


def test_the_readable_check_expects_undecodable_distorted_images_but_not_missing_ones(db_url, repo, tmp_path,
                                                                                     make_record):
    """The demo keeps a truncated JPEG under distorted/ (image_undecodable): that is no warning."""
    from traffic_platform.domain.captures import DISTORTED

    from .. import images

    uri = f"file://{tmp_path / 'objects'}"
    store = open_object_store(Settings(object_store_uri=uri))
    good = images.jpeg_bytes(images.street_scene(320, 180, seed=3), quality=85)
    day = hs.PARTITION.split("-")
    stamp = f"{day[2]}-{day[1]}-{day[0]}"
    store.put("images/good.jpg", good, "image/jpeg")
    store.put("distorted/broken.jpg", good[: len(good) // 3], "image/jpeg")
    repo.save_capture(make_record(f"a_Leuven_Belgium_{stamp}_10-00-00.jpg", image_key="images/good.jpg"))
    repo.save_capture(make_record(f"a_Leuven_Belgium_{stamp}_10-01-00.jpg", image_key="distorted/broken.jpg",
                                  status=DISTORTED, quality_reasons=["image_undecodable"], detections=[],
                                  model_name=None, model_version=None))
    resources = {"database": DatabaseResource(url=db_url), "object_store": ObjectStoreResource(uri=uri)}

    def readable() -> bool:
        result = dg.materialize([*REPORTING_ASSETS, HEALTH_CHECKS[2]], partition_key=hs.PARTITION, resources=resources)
        (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "capture_features_images_readable"]
        return evaluation.passed

    assert readable()
    repo.save_capture(make_record(f"a_Leuven_Belgium_{stamp}_10-02-00.jpg", image_key="images/gone.jpg"))
    assert not readable()  # an accepted capture whose image is not in the store
