"""Full-page screenshot of a Minimeter report in headless Chromium (``make report-screenshot``).

Installs Debian's ``chromium`` with apt-get when no Chromium is on PATH (as root). Chromium's
``--screenshot`` captures its window, so the window is made taller than any report and the blank
bottom is cropped; the page is also cut into tiles of ``--tile`` pixels, small enough for an
image viewer. Usage: python scripts/report_screenshot.py [REPORT.html] [--out PNG]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("report-screenshot: chromium is not installed (apt-get install chromium, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    found = shutil.which("chromium")
    if not found:
        sys.exit("report-screenshot: apt-get installed no chromium")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", default="out/demo/run/_report/index.html")
    parser.add_argument("--out", default="out/demo/report-screenshot.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=45000, help="window height (cropped)")
    parser.add_argument("--tile", type=int, default=1800, help="tile height; 0: no tiles")
    args = parser.parse_args(argv)
    report = Path(args.report)
    if not report.is_file():
        sys.exit(f"report-screenshot: {report}: no report (run make demo first)")
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={profile}",
                f"--window-size={args.width},{args.height}",
                f"--screenshot={out}",
                report.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    page = Image.open(out).convert("RGB")
    box = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    bottom = min(page.height, (box[3] if box else 0) + 40)
    if bottom >= page.height:
        print(f"report-screenshot: the page is taller than {args.height} px (cut)", file=sys.stderr)
    page = page.crop((0, 0, page.width, bottom))
    page.save(out)
    print(f"report-screenshot: {out} ({page.width}x{page.height})")
    for old in out.parent.glob(f"{out.stem}-*.png"):
        old.unlink()
    if args.tile:
        for i, top in enumerate(range(0, page.height, args.tile), start=1):
            tile = out.with_name(f"{out.stem}-{i:02d}.png")
            page.crop((0, top, page.width, min(page.height, top + args.tile))).save(tile)
            print(f"  {tile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
