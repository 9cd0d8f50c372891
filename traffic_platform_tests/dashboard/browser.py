"""Open a dashboard file in real headless Chromium (Debian's ``chromium`` via Playwright) and
read what a person sees on every tab; shared by the tests and ``scripts/dashboard_screenshots.py``.

Chromium missing: the test is skipped, or fails when ``CI=true`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traffic_platform.dashboard.render import PAGES

CHARTS = {pid: len(charts) for pid, _, charts in PAGES}
VIEWPORT = {"width": 1200, "height": 800}
_DRAWN = """([tab, n]) => {
  const charts = [...document.querySelectorAll(`[data-page="${tab}"] [data-chart]`)];
  return charts.length === n && charts.every(c => c.dataset.state === 'drawn' && c.querySelector('svg.marks'));
}"""


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright driving the system's ``chromium``)."""
    from traffic_platform_tests.conftest import _unavailable

    executable = shutil.which("chromium")
    if executable is None:
        _unavailable("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Seen:
    """What one visit saw: every request, errors, and the numbers as shown on each tab."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    charts: dict[str, int] = field(default_factory=dict)  # tab -> charts drawn (an svg each)
    kpis: dict[str, str] = field(default_factory=dict)  # data-kpi -> text, read on the visible tab
    locations: dict[int, dict[str, str]] = field(default_factory=dict)  # location id -> column -> text
    classes: dict[str, dict[str, str]] = field(default_factory=dict)
    gallery: list[tuple[str, int]] = field(default_factory=list)  # (key, decoded image width)
    model_version: str = ""
    empty_text: str | None = None
    screenshots: dict[str, Path] = field(default_factory=dict)


def _cells(page: Any, selector: str, key: str) -> dict[str, dict[str, str]]:
    return page.eval_on_selector_all(selector, f"""rows => Object.fromEntries(rows.map(r => [r.dataset.{key},
        Object.fromEntries([...r.querySelectorAll('[data-col]')].map(c => [c.dataset.col, c.innerText.trim()]))]))""")


def browse(browser: Any, path: Path, shots: Path | None = None, *, timeout_ms: int = 20_000) -> Seen:
    """Open ``path`` as ``file://``, click through every tab, wait until its charts are drawn,
    read the numbers shown and (with ``shots``) save ``dashboard-<tab>.png`` per tab."""
    seen = Seen()
    page = browser.new_page(viewport=VIEWPORT)
    page.on("request", lambda r: seen.requests.append(r.url))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.goto(Path(path).resolve().as_uri())
    page.wait_for_load_state("load")
    if page.locator("[data-empty]").count():
        seen.empty_text = page.locator("[data-empty]").inner_text()
        if shots is not None:
            seen.screenshots["empty"] = _shot(page, shots / "dashboard-empty.png")
        page.close()
        return seen
    seen.model_version = page.locator("[data-model-version]").inner_text()
    for tab, n in CHARTS.items():
        page.click(f'[data-tab="{tab}"]')
        panel = page.locator(f'[data-page="{tab}"]')
        assert panel.is_visible(), tab
        page.wait_for_function(_DRAWN, arg=[tab, n], timeout=timeout_ms)
        seen.charts[tab] = panel.locator("[data-chart] svg.marks").count()
        for kpi in panel.locator("[data-kpi]").all():
            seen.kpis[kpi.get_attribute("data-kpi")] = kpi.inner_text().strip()
        if tab == "locations":
            seen.locations = {int(k): v for k, v in _cells(page, "[data-location-id]", "locationId").items()}
        if tab == "classes":
            seen.classes = _cells(page, "[data-class]", "class")
        if tab == "gallery":
            images = panel.locator("[data-gallery-item]")
            images.last.scroll_into_view_if_needed() if images.count() else None
            page.wait_for_function("() => [...document.querySelectorAll('[data-gallery-item] img')].every(i => i.complete)")
            seen.gallery = page.eval_on_selector_all(
                "[data-gallery-item]", "fs => fs.map(f => [f.dataset.key, f.querySelector('img').naturalWidth])")
            seen.gallery = [tuple(g) for g in seen.gallery]
            panel.scroll_into_view_if_needed()
            page.evaluate("window.scrollTo(0, 0)")
        if shots is not None:
            seen.screenshots[tab] = _shot(page, shots / f"dashboard-{tab}.png")
    page.close()
    return seen


def _shot(page: Any, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    return target
