"""One self-contained HTML file: six tabs, Vega-Lite charts, data and thumbnails inlined.

Nothing is fetched when it opens: the Vega/Vega-Lite/vega-embed bundle is inlined once (from
``vl-convert``, which ships it), the specs carry their data, the gallery's images are
``data:`` URLs, the fonts are the system's. A chart is drawn (SVG) when its tab is first
shown, so it gets its tab's real width. Key numbers are in the DOM with stable hooks for
people and tests alike: ``data-kpi="vehicles"``, ``<tr data-location-id>`` with
``<td data-col>``, ``<tr data-class>``, ``<figure data-gallery-item>``, ``data-model-version``.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from html import escape
from typing import Any

from ..domain.classes import TRAFFIC_CLASSES
from .charts import build_specs, location_label
from .data import DashboardData

# Belt and braces for "opens offline": the page itself forbids every fetch (Vega compiles its
# expressions with Function, hence 'unsafe-eval'); images are data: URLs only.
CSP = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:"

# (tab id, title, the charts on it)
PAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("overview", "Overview", ("trend_hourly", "trend_daily")),
    ("locations", "Locations", ("locations_busyness",)),
    ("time", "Time patterns", ("time_heatmap",)),
    ("classes", "Class mix", ("classes_total", "classes_by_location")),
    ("quality", "Data quality", ("quality_coverage", "quality_distorted", "quality_degraded")),
    ("gallery", "Gallery", ()),
)

_CSS = """
:root{--fg:#1d2530;--muted:#5b6675;--line:#dde2e8;--accent:#2563eb;--bg:#f5f7fa}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:14px 24px 0}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:18px 0 8px}.meta{color:var(--muted);margin:0 0 10px;font-size:13px}
nav{display:flex;gap:4px;flex-wrap:wrap}nav button{font:inherit;border:0;background:none;padding:8px 14px;cursor:pointer;color:var(--muted);border-bottom:3px solid transparent}
nav button[aria-selected=true]{color:var(--fg);border-bottom-color:var(--accent);font-weight:600}
main{padding:16px 24px 32px;max-width:1400px}section[hidden]{display:none}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin-bottom:14px}
.kpi{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}.kpi b{display:block;font-size:22px}.kpi span{color:var(--muted);font-size:12px}
.grid{margin-top:14px;display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}.chart{width:100%;min-height:330px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eef1f5;font-weight:600;font-size:13px}
.note{color:var(--muted);font-size:13px}.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:8px;overflow:hidden}figure img{width:100%;display:block;aspect-ratio:16/10;object-fit:cover;background:#222}
figcaption{padding:6px 10px;font-size:12px;color:var(--muted)}.empty{background:#fff;border:1px solid var(--line);border-radius:8px;padding:24px;max-width:720px}
"""

_JS = """
const SPECS = JSON.parse(document.getElementById('specs').textContent);
function show(name) {
  if (!document.querySelector('[data-page="' + name + '"]')) name = 'overview';
  document.querySelectorAll('[data-page]').forEach(p => { p.hidden = p.dataset.page !== name; });
  document.querySelectorAll('[data-tab]').forEach(t => t.setAttribute('aria-selected', String(t.dataset.tab === name)));
  document.querySelectorAll('[data-page="' + name + '"] [data-chart]').forEach(el => {
    if (el.dataset.state) return;
    el.dataset.state = 'drawing';
    vegaEmbed(el, SPECS[el.dataset.chart], {renderer: 'svg', actions: false})
      .then(() => { el.dataset.state = 'drawn'; })
      .catch(err => { el.dataset.state = 'failed'; el.textContent = 'chart failed: ' + err; });
  });
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
}
document.querySelectorAll('[data-tab]').forEach(t => t.addEventListener('click', () => show(t.dataset.tab)));
show(location.hash.slice(1) || 'overview');
"""


@cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, as vl-convert ships them (built once per process)."""
    import vl_convert

    return vl_convert.javascript_bundle()


def integer(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def per_image(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _when(value) -> str:
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _script_json(value: Any) -> str:
    """JSON that can sit inside ``<script>`` (no ``</script>`` or ``<!--`` can end it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render(data: DashboardData) -> str:
    """The dashboard page for ``data`` (the "no data yet" page when nothing is counted)."""
    if data.empty:
        return _empty_page(data)
    specs = build_specs(data)
    model = data.model
    others = ", ".join(f"{escape(m.name)} {escape(m.version)} ({m.images_accepted:,} images)" for m in data.other_models)
    tabs = "".join(f'<button role="tab" data-tab="{pid}" aria-selected="false">{escape(title)}</button>' for pid, title, _ in PAGES)
    header = (
        f'<header><h1>Traffic dashboard</h1><p class="meta">Model <b data-model-name>{escape(model.name)}</b> '
        f'version <b data-model-version>{escape(model.version)}</b> ({model.images_accepted:,} accepted images; the version '
        f'with the most images is shown, counts are never added across versions)'
        + (f" · other versions: {others}" if others else "")
        + f' · generated <span data-generated-at>{data.generated_at:%Y-%m-%d %H:%M} UTC</span></p><nav role="tablist">{tabs}</nav></header>'
    )
    sections = {
        "overview": _overview(data),
        "locations": _locations(data),
        "time": '<p class="note">Mean vehicles per image by local hour and weekday, over every day reported.</p>',
        "classes": _classes(data),
        "quality": _quality(data),
        "gallery": _gallery(data),
    }
    body = "".join(
        f'<section data-page="{pid}" role="tabpanel" hidden><h2>{escape(title)}</h2>{sections[pid]}'
        + (f'<div class="grid">{"".join(_chart(c) for c in charts)}</div>' if charts else "")
        + "</section>"
        for pid, title, charts in PAGES
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Traffic dashboard</title><style>{_CSS}</style></head><body>{header}<main>{body}</main>"
        f'<script id="specs" type="application/json">{_script_json(specs)}</script>'
        f"<script>{vega_bundle()}</script><script>{_JS}</script></body></html>"
    )


def _chart(name: str) -> str:
    return f'<div class="card"><div class="chart" data-chart="{name}"></div></div>'


def _kpi(name: str, shown: str, label: str) -> str:
    return f'<div class="kpi"><b data-kpi="{name}">{shown}</b><span>{escape(label)}</span></div>'


def _overview(data: DashboardData) -> str:
    k = data.kpis()
    return (
        '<div class="kpis">'
        + _kpi("vehicles", integer(k["vehicles"]), "vehicles seen (sum over images)")
        + _kpi("vehicles_per_image", per_image(k["vehicles_per_image"]), "vehicles per image (busyness)")
        + _kpi("people", integer(k["people"]), "people seen (sum over images)")
        + _kpi("images_accepted", integer(k["images_accepted"]), "images counted")
        + _kpi("images_received", integer(k["images_received"]), "images received")
        + _kpi("distorted_share", percent(k["distorted_share"]), "distorted images")
        + _kpi("locations", integer(k["locations"]), "locations")
        + _kpi("days", integer(k["days"]), "days with images")
        + '</div><p class="note">An image is a snapshot: "vehicles per image" says how busy a street looks, '
        "not how many vehicles pass. Sums over images grow with the number of images taken.</p>"
    )


def _locations(data: DashboardData) -> str:
    head = ("<tr><th>location</th><th>country</th><th class=n>images</th><th class=n>counted</th><th class=n>distorted</th>"
            "<th class=n>vehicles</th><th class=n>vehicles / image</th><th class=n>people</th><th>last image (local)</th></tr>")
    rows = "".join(
        f'<tr data-location-id="{r["location_id"]}"><td data-col="location">{escape(location_label(r))}</td>'
        f'<td data-col="country">{escape(r["country"])}</td>'
        f'<td class=n data-col="images_total">{integer(r["images_total"])}</td>'
        f'<td class=n data-col="images_accepted">{integer(r["images_accepted"])}</td>'
        f'<td class=n data-col="images_distorted">{integer(r["images_distorted"])}</td>'
        f'<td class=n data-col="vehicles">{integer(r["vehicles"])}</td>'
        f'<td class=n data-col="vehicles_per_image">{per_image(r["vehicles_per_image"])}</td>'
        f'<td class=n data-col="people">{integer(r["people"])}</td>'
        f'<td data-col="last_captured_at">{_when(r["last_captured_at"])}</td></tr>'
        for r in data.location_rows()
    )
    return f'<table data-table="locations"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _classes(data: DashboardData) -> str:
    totals = data.class_totals()
    whole = sum(totals.values())
    rows = "".join(
        f'<tr data-class="{c}"><td>{c}</td><td class=n data-col="total">{integer(totals[c])}</td>'
        f'<td class=n data-col="share">{percent(totals[c] / whole if whole else None)}</td></tr>'
        for c in TRAFFIC_CLASSES
    )
    return (f'<table data-table="classes" style="max-width:480px;margin-bottom:14px"><thead><tr><th>class</th>'
            f'<th class=n>road users (sum over images)</th><th class=n>share</th></tr></thead><tbody>{rows}</tbody></table>')


def _quality(data: DashboardData) -> str:
    k = data.kpis()
    versions = sorted({v.strip() for r in data.quality for v in (r["model_versions"] or "").split(",") if v.strip()})
    return (
        '<div class="kpis">'
        + _kpi("quality_images_received", integer(k["images_received"]), "images received")
        + _kpi("quality_images_distorted", integer(k["images_distorted"]), "distorted (not counted)")
        + _kpi("quality_distorted_share", percent(k["distorted_share"]), "distorted share")
        + _kpi("quality_degraded_share", percent(k["degraded_share"]), "degraded share (counted, fog, low light, …)")
        + "</div>"
        + f'<p class="note">Coverage = images received / images expected from the cadence. Degraded = '
        f'counted images taken in degraded conditions (fog, low light, low sharpness, glare), of the images counted. '
        f'Model versions reported: <span data-model-versions>{escape(", ".join(versions) or "–")}</span>.</p>'
    )


def _gallery(data: DashboardData) -> str:
    if not data.gallery:
        return '<p class="note" data-gallery-empty>No annotated images in the object store yet.</p>'
    items = "".join(
        f'<figure data-gallery-item data-key="{escape(g.key)}"><img alt="annotated capture {escape(g.key)}" '
        f'src="data:image/jpeg;base64,{base64.b64encode(g.jpeg).decode()}"><figcaption>{g.day:%Y-%m-%d} · stored '
        f'{g.stored_at:%Y-%m-%d %H:%M} UTC · {escape(g.key.rsplit("/", 1)[-1][:8])}</figcaption></figure>'
        for g in data.gallery
    )
    return f'<p class="note">The {len(data.gallery)} newest annotated images (boxes as detected).</p><div class="gallery">{items}</div>'


def _empty_page(data: DashboardData) -> str:
    reason = escape(data.problem) if data.problem else "The reporting views hold no counted images yet."
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<title>Traffic dashboard: no data yet</title>'
        f"<style>{_CSS}</style></head><body><header><h1>Traffic dashboard</h1>"
        f'<p class="meta">generated <span data-generated-at>{data.generated_at:%Y-%m-%d %H:%M} UTC</span></p></header>'
        f'<main><div class="empty" data-empty><h2>No data yet</h2><p>{reason}</p><p>Ingest images '
        "(<code>traffic-platform ingest PATH</code> or <code>POST /v1/images</code>), then run "
        "<code>traffic-platform report --from DATE --to DATE</code>; this page fills in from the reporting views.</p>"
        "</div></main></body></html>"
    )
