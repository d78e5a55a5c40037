"""Regenerate docs/report-screenshot.png and docs/summary-screenshot.png from a finished run.

    python docs/screenshots.py --workdir DIR [--configfile config/config.yaml] [--results FOLDER]

DIR holds the run (its ``.snakemake/`` and, unless ``--results`` names another folder, its
``results/``; the repository root by default).
The script builds the Snakemake report there, then photographs its landing page (the
workflow description and the rule graph) and the first screen of ``results/summary.html``
with headless Chromium (Debian: ``apt-get install chromium``). Look at the two images
afterwards: nothing here checks what they show.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# Chromium's JavaScript (the Snakemake report is a React page) gets this long to render.
RENDER_BUDGET_MS = 20_000


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("no Chromium found: apt-get install chromium (or put chromium on PATH)")


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    """A ``width`` x ``height`` screenshot of the top of ``page``."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    print(f"{page} -> {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DOCS.parent, help="where the run was made")
    parser.add_argument("--configfile", default=None, help="the run's --configfile (default: the embedded one)")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: WORKDIR/results)")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the two PNGs")
    args = parser.parse_args(argv)
    summary = (args.results or args.workdir / "results") / "summary.html"
    if not summary.is_file():
        sys.exit(f"{summary} is missing: run the pipeline in {args.workdir} first")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        config = ["--configfile", args.configfile] if args.configfile else []
        subprocess.run(
            ["snakemake", "--cores", "1", *config, "--report", str(report)], cwd=args.workdir, check=True, timeout=600
        )
        screenshot(report, args.out / "report-screenshot.png", 1400, 900)
    screenshot(summary, args.out / "summary-screenshot.png", 1300, 1100)


if __name__ == "__main__":
    main()
