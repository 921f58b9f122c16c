"""reports/index.html, made from RECORDED results (tests/data/report), opened in a real headless Chromium:
one row per tag, sorting by a click on a header, filtering, nothing fetched; a screenshot kept for people.

The screenshot lands in this test's temporary folder (pytest keeps the last runs' folders) and, when
TORCHYARD_ARTIFACTS names a folder, there too.
"""

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from builder.report import page as report_page
from builder.report import rows as report_rows
from tests.browser import Browser
from tests.conftest import ROOT

RECORDED = ROOT / "tests" / "data" / "report" / "reports"


@pytest.fixture(scope="module")
def made(shipped, tmp_path_factory):
    reports = shutil.copytree(RECORDED, tmp_path_factory.mktemp("report") / "reports")
    result = report_rows.collect(shipped, reports=reports, digests=reports / "no-digests",
                            now=datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc))
    report_page.write(result, reports)
    return result, reports / "index.html"


@pytest.fixture(scope="module")
def page(made):
    browser = Browser()
    try:
        browser.open(made[1].as_uri())
        yield browser
    finally:
        browser.close()


def order(page) -> list[str]:
    return page.evaluate("Array.from(document.querySelectorAll('#matrix tbody tr')).map(r => r.dataset.tag)")


def visible(page) -> list[str]:
    return page.evaluate("Array.from(document.querySelectorAll('#matrix tbody tr')).filter(r => !r.hidden)"
                         ".map(r => r.dataset.tag)")


def test_one_row_per_tag_in_matrix_order(page, shipped):
    assert order(page) == list(shipped.specs)
    assert page.evaluate("document.getElementById('count').textContent") == f"{len(shipped.specs)} of {len(shipped.specs)} tags"


def test_the_page_fetched_nothing_but_itself(page, made):
    assert page.requests() == [made[1].as_uri()]


def test_clicking_a_header_sorts_and_clicking_again_reverses(page, made):
    rows = made[0].rows
    by_size = [r.tag for r in sorted(rows, key=lambda r: r.size or -1)]  # stable: ties keep matrix order
    page.click("thead tr.names th[data-key=size]")
    assert order(page) == by_size
    assert page.evaluate("document.querySelector('th[data-key=size]').getAttribute('aria-sort')") == "ascending"
    page.click("thead tr.names th[data-key=size]")
    assert order(page)[:2] == [r.tag for r in sorted(rows, key=lambda r: -(r.size or -1))][:2]
    assert page.evaluate("document.querySelector('th[data-key=size]').getAttribute('aria-sort')") == "descending"
    page.click("thead tr.names th[data-key=torch]")  # versions sort as numbers: 2.10 after 2.9
    tags = order(page)
    assert tags.index("v2.10-cu126") > tags.index("v2.9-cu130")
    page.click("thead tr.names th[data-key=tag]")
    assert order(page) == [r.tag for r in rows]


def test_typing_filters_rows_and_a_count_card_shows_one_state(page, made):
    rows = made[0].rows
    page.type("#filter", "cu132")
    assert visible(page) == [r.tag for r in rows if "cu132" in r.tag]
    page.evaluate("(() => { const f = document.getElementById('filter'); f.value = ''; "
                  "f.dispatchEvent(new Event('input')); })()")
    page.click("#cards .card.passed")
    assert visible(page) == [r.tag for r in rows if r.state == report_rows.PASSED] == ["v2.6-cu124", "v2.15-cu132"]
    page.click("#cards .card.not-built-here")
    assert len(visible(page)) == sum(r.state == report_rows.NOT_HERE for r in rows) > 10
    page.click("#cards .card[data-state='']")
    assert len(visible(page)) == len(rows)


def test_status_colours_and_charts_are_drawn(page):
    colours = page.evaluate("""(() => {
        const colour = s => getComputedStyle(document.querySelector(s)).color;
        return [colour("tr[data-tag='v2.6-cu124'] td.state span"), colour("tr[data-tag='v2.6-cu124'] td.status-PASS"),
                colour("tr[data-tag='v2.6-cu126'] td.state span"), colour("tr[data-tag='v2.6-cu124'] td.status-SKIPPED"),
                colour("#cards .card.failed b")];
    })()""")
    passed, pass_check, not_here, skipped, failed = colours
    assert passed == pass_check and not_here == skipped  # green, and grey
    assert len({passed, not_here, failed}) == 3  # and red for failures
    assert page.evaluate("document.querySelectorAll('svg.chart').length") == 2  # sizes; images/s on this CPU
    assert page.evaluate("document.querySelectorAll('svg.chart rect.bar-packed > title').length") == 2  # one bar per built tag


def test_a_screenshot_is_kept(page, made, tmp_path):
    page.open(made[1].as_uri())  # as a person first sees it
    shot = page.screenshot(tmp_path / "index.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"screenshot of reports/index.html: {shot}")
    if os.environ.get("TORCHYARD_ARTIFACTS"):
        keep = Path(os.environ["TORCHYARD_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / "index.png")
