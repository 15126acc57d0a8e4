"""A real browser on a report: Debian's chromium driven by its chromedriver through Selenium.

Used by the report's browser test and by ``make report-screenshot`` (the README's picture),
so both look at the report the same way. The driver path is explicit: Selenium's own
driver manager would try to download one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHART_STATE = """
return Array.from(document.querySelectorAll('[data-chart]')).map(function (box) {
  var plot = box.querySelector('.js-plotly-plot');
  var points = plot ? plot.querySelectorAll('g.point path, g.slice path.surface').length : 0;
  var values = plot && plot.data ? plot.data.reduce(function (n, t) {
    return n + (t.y || t.values || []).length; }, 0) : 0;
  return {id: box.dataset.chart, rendered: !!(plot && plot.querySelector('svg.main-svg')),
          points: points, values: values};
});
"""
"""Each chart's id, whether Plotly drew it, the marks it drew and the values it was given."""


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def open_report(driver: webdriver.Chrome, path: Path, timeout: float = 30) -> list[dict[str, Any]]:
    """Load the report from disk and wait until every chart is drawn; the charts' state."""
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + timeout
    while True:
        charts: list[dict[str, Any]] = driver.execute_script(CHART_STATE)
        if (charts and all(c["rendered"] for c in charts)) or time.monotonic() > deadline:
            return charts
        time.sleep(0.2)


def screenshot(report: Path, target: Path) -> None:
    """A picture of the whole report, as tall as its content."""
    with chromium() as driver:
        open_report(driver, report)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, int(height) + 40)
        time.sleep(0.5)  # Plotly's responsive charts redraw on resize
        driver.save_screenshot(str(target))


def main(argv: list[str]) -> int:
    """``python -m tools.browser REPORT.html PICTURE.png``."""
    report, picture = (Path(a) for a in argv)
    screenshot(report, picture)
    print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
