"""Screenshot every tab of a dashboard file into docs/ (the README's pictures), as small PNGs.

    .venv/bin/python scripts/dashboard_screenshots.py var/dashboard/index.html [--out docs]

Opens the file in headless Chromium exactly as the browser test does (Debian's ``chromium``),
then quantises each 1200x800 screenshot to a 64-colour palette (fast octree) so it stays well under 150 KB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from PIL import Image

    from traffic_platform_tests.dashboard.browser import browse, chromium

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--colours", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as raw, chromium() as browser:
        seen = browse(browser, args.dashboard, Path(raw))
        if seen.requests != [args.dashboard.resolve().as_uri()] or seen.errors:
            print(f"unexpected requests or errors: {seen.requests} {seen.errors}", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        for shot in seen.screenshots.values():
            target = args.out / shot.name
            Image.open(shot).convert("RGB").quantize(args.colours, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
            print(f"{target} {target.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
