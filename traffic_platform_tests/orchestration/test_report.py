"""`traffic-platform report --from --to`: the reporting assets through Dagster, in-process, on known data."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from traffic_platform import cli
from traffic_platform.storage.database import make_engine, upgrade
from traffic_platform.storage.repository import Repository

from . import datagen
from .corrupt import execute_unchecked
from .datagen import DAY
from .test_checks import CORRUPTIONS


@pytest.fixture
def sqlite_env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'report.db'}"
    monkeypatch.setenv("TRAFFIC_DATABASE_URL", url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # an ephemeral Dagster instance
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_report_fills_the_tables_and_summarises_the_checks(sqlite_env, capsys):
    data = datagen.generate(Repository(sqlite_env), small=True, redetect=False)
    assert cli.main(["report", "--from", DAY, "--to", DAY]) == 0
    out = capsys.readouterr()
    assert f"report {DAY} .. {DAY}: 1 day(s)" in out.out and "result: ok" in out.out
    assert "traffic_counts_hourly_reconcile (blocking): 1/1 passed" in out.out
    assert "reporting" in out.err  # the progress bar
    expected = datagen.expected_counts(data, DAY, "hourly", datagen.reported_models(data, DAY), datagen.expected_cadences(data, DAY))
    with sqlite_env.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM traffic_counts_hourly")).scalar_one() == len(expected) > 0
        assert conn.execute(text("SELECT COUNT(*) FROM v_traffic_counts_hourly_wide")).scalar_one() == len(expected) // 6
        assert conn.execute(text("SELECT COUNT(*) FROM v_dim_time_of_day")).scalar_one() == 96


def test_a_corrupted_row_fails_the_report(sqlite_env, capsys):
    datagen.generate(Repository(sqlite_env), small=True, redetect=False)
    assert execute_unchecked(sqlite_env, CORRUPTIONS["score_above_one"][1]) == 1
    assert cli.main(["report", "--from", DAY, "--to", DAY, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "1 blocking failure(s)" in out
    with sqlite_env.connect() as conn:  # nothing was published for the day
        assert conn.execute(text("SELECT COUNT(*) FROM traffic_counts_hourly")).scalar_one() == 0


@pytest.mark.parametrize(("first", "last", "code"), [("2022-10-13", "2022-10-12", "bad_date_range"),
                                                     ("2021-12-31", "2022-01-01", "day_out_of_partitions")])
def test_bad_days_are_refused(sqlite_env, capsys, first, last, code):
    assert cli.main(["report", "--from", first, "--to", last]) == 2
    assert code in capsys.readouterr().err
