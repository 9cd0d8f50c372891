"""Which IANA time zone a location's wall-clock times are in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Countries with a single zone; cities or other countries come from settings
# (TRAFFIC_TIMEZONES). Unknown locations are UTC, as DESIGN §4 says.
DEFAULT_COUNTRY_ZONES: dict[str, str] = {
    "belgium": "Europe/Brussels",
    "netherlands": "Europe/Amsterdam",
    "luxembourg": "Europe/Luxembourg",
    "france": "Europe/Paris",
    "germany": "Europe/Berlin",
    "switzerland": "Europe/Zurich",
    "austria": "Europe/Vienna",
    "italy": "Europe/Rome",
    "spain": "Europe/Madrid",
    "poland": "Europe/Warsaw",
    "czechia": "Europe/Prague",
    "denmark": "Europe/Copenhagen",
    "sweden": "Europe/Stockholm",
    "norway": "Europe/Oslo",
    "finland": "Europe/Helsinki",
    "ireland": "Europe/Dublin",
    "uk": "Europe/London",
    "united kingdom": "Europe/London",
    "england": "Europe/London",
    "japan": "Asia/Tokyo",
}


def resolve_timezone(city: str, country: str, overrides: Mapping[str, str] | None = None) -> str:
    """Zone for ``city``/``country``: an override for ``"City/Country"``, then ``"Country"``, then the
    built-in country table, else ``"UTC"``. Matching ignores case."""
    table = {k.casefold(): v for k, v in DEFAULT_COUNTRY_ZONES.items()}
    table.update({k.casefold(): v for k, v in (overrides or {}).items()})
    for key in (f"{city}/{country}", country):
        zone = table.get(key.casefold().replace("_", " ")) or table.get(key.casefold())
        if zone:
            return zone
    return "UTC"


def validate_zone(zone: str) -> str:
    """Return ``zone`` if the IANA database knows it, else raise ``ValueError``."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {zone!r}") from None
    return zone


def local_to_utc(local: datetime, zone: str) -> datetime:
    """Naive local wall-clock time -> naive UTC. Ambiguous fall-back times take the first (DST) one."""
    aware = local.replace(tzinfo=ZoneInfo(zone), fold=0)
    return aware.astimezone(UTC).replace(tzinfo=None)
