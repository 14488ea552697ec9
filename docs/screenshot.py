"""Regenerate docs/report.png, the README's picture of a `bkprof report` page.

It runs the README's commands (`bkprof flops` at the published configuration, then the page of its
document and the committed H200 profile) in a scratch folder, opens the page in headless Chromium (Debian's `chromium`, driven by playwright, as
the tests do) and keeps the top of it, light scheme, 1200 x 900 CSS pixels, in 256 colours.

    python docs/screenshot.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ["flops.json", "reports/profile/H200-2026-12-02/profile-H200-defaults.json"]
OUTPUT = ROOT / "docs" / "report.png"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bkprof-screenshot-") as scratch:
        page = Path(scratch) / "report.html"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # the README's relative paths, so the page names its inputs as the README's command does
        for name in INPUTS[1:]:
            (Path(scratch) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, Path(scratch) / name)
        for args in (["flops", "--format", "json", "--output", "flops.json"], ["report", *INPUTS, "--output", str(page)]):
            subprocess.run([sys.executable, "-m", "bkprof", *args], cwd=scratch, env=env, check=True)
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(Path(scratch) / "user-data"), executable_path=CHROMIUM, args=ARGS, headless=True, offline=True,
                color_scheme="light", viewport={"width": 1200, "height": 900}, timeout=30_000)
            tab = context.new_page()
            tab.goto(page.as_uri(), wait_until="load")
            png = tab.screenshot()
            context.close()
    OUTPUT.write_bytes(_small(png))
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size:,} bytes)")


def _small(png: bytes) -> bytes:
    """The screenshot in a 256-colour palette (Pillow, which matplotlib already needs): a third of the bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
