from datetime import datetime

from traffic_platform.domain.timezones import local_to_utc, resolve_timezone


def test_resolution_order():
    overrides = {"Leuven/Belgium": "Europe/Amsterdam", "Atlantis": "Atlantic/Azores"}
    assert resolve_timezone("Leuven", "Belgium", overrides) == "Europe/Amsterdam"
    assert resolve_timezone("Gent", "Belgium", overrides) == "Europe/Brussels"
    assert resolve_timezone("Poseidonia", "atlantis", overrides) == "Atlantic/Azores"
    assert resolve_timezone("Nowhere", "Utopia") == "UTC"


def test_local_to_utc_handles_dst():
    assert local_to_utc(datetime(2022, 7, 1, 12, 0), "Europe/Brussels") == datetime(2022, 7, 1, 10, 0)
    assert local_to_utc(datetime(2022, 1, 1, 12, 0), "Europe/Brussels") == datetime(2022, 1, 1, 11, 0)
    # fall-back hour: 02:30 happens twice on 30-10-2022; the first (summer time) is chosen
    assert local_to_utc(datetime(2022, 10, 30, 2, 30), "Europe/Brussels") == datetime(2022, 10, 30, 0, 30)
