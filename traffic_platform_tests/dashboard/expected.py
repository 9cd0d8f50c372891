"""The numbers the dashboard must show, computed here with SQL of our own over the views."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

VEHICLES = ("car", "truck", "bus", "motorcycle")


def expected(engine) -> dict[str, Any]:
    """Model shown (most accepted images, then newest), KPIs, per-location and per-class figures.

    Per class and vehicles come from the *long* view ``v_traffic_counts_hourly`` (the page reads
    the wide daily one), so a wrong pivot or window on either side shows up."""
    with engine.connect() as conn:
        models = conn.execute(text(
            "SELECT model_name, model_version, SUM(images_accepted) AS n, MAX(computed_at) AS c "
            "FROM v_traffic_counts_daily_wide GROUP BY model_name, model_version ORDER BY n DESC, c DESC")).all()
        name, version = models[0][0], models[0][1]
        model = {"model_name": name, "model_version": version}
        per_class = dict(conn.execute(text(
            "SELECT traffic_class, SUM(total_count) FROM v_traffic_counts_hourly "
            "WHERE model_name = :model_name AND model_version = :model_version GROUP BY traffic_class"), model).all())
        all_versions_vehicles = conn.execute(text(
            f"SELECT SUM(total_count) FROM v_traffic_counts_hourly WHERE traffic_class IN {VEHICLES!r}")).scalar_one()
        accepted = conn.execute(text(
            "SELECT SUM(images_accepted) FROM v_traffic_counts_daily WHERE traffic_class = 'car' "
            "AND model_name = :model_name AND model_version = :model_version"), model).scalar_one()
        received, distorted, days = conn.execute(text(
            "SELECT SUM(images_received), SUM(images_distorted), COUNT(DISTINCT date) FROM v_data_quality_daily")).one()
        degraded, counted = conn.execute(text(
            "SELECT SUM(images_degraded), SUM(images_accepted - images_excluded_health) FROM v_data_quality_daily"
            " WHERE images_degraded IS NOT NULL")).one()
        locations = {r.location_id: r for r in conn.execute(text("SELECT * FROM v_locations"))}
        per_location = {r[0]: {"vehicles": int(r[1]), "accepted": int(r[2]), "people": int(r[3])} for r in conn.execute(text(
            "SELECT location_id, SUM(CASE WHEN traffic_class IN ('car', 'truck', 'bus', 'motorcycle') THEN total_count ELSE 0 END), "
            "SUM(CASE WHEN traffic_class = 'car' THEN images_accepted ELSE 0 END), "
            "SUM(CASE WHEN traffic_class = 'person' THEN total_count ELSE 0 END) FROM v_traffic_counts_hourly "
            "WHERE model_name = :model_name AND model_version = :model_version GROUP BY location_id"), model)}
    vehicles = sum(int(per_class[c]) for c in VEHICLES)
    return {
        "model_version": version,
        "other_versions": len(models) - 1,
        "all_versions_vehicles": int(all_versions_vehicles),
        "kpis": {
            "vehicles": vehicles,
            "people": int(per_class["person"]),
            "images_accepted": int(accepted),
            "images_received": int(received),
            "vehicles_per_image": round(vehicles / int(accepted), 2),
            "distorted_share": f"{int(distorted) / int(received):.1%}",
            "degraded_share": f"{int(degraded) / int(counted):.1%}",
            "locations": len(locations),
            "days": int(days),
        },
        "classes": {c: int(n) for c, n in per_class.items()},
        "locations": locations,
        "per_location": per_location,
    }


def number(shown: str) -> int:
    """``"1,234"`` as a person reads it -> 1234."""
    return int(shown.replace(",", ""))
