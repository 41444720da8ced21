"""`report`: one HTML file that works offline, agrees with `stats`, and whose browser works in a real Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from graphs.run import main
from runner import run_folder as rf
from runner.run_folder import RunFolder
from results.stats import STATS_ROWS
from tests.planting import OTHER_DATABASE, REJECTED_REASONS

CHARTS = {"turns", "steps", "tasks", "similarity", "stages", "difficulty", "tools", "rejections"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,2000"]


@pytest.fixture(scope="module")
def report(planted_run, second_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(planted_run), str(second_run), "--out", str(out)]) == 0
    return out


class _Tables(HTMLParser):
    """The cells of every table on the page, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs).get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(path: Path) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tables


def test_the_report_is_one_file_that_needs_no_network(report):
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", html), "nothing may load from a network"
    assert html.count('data-chart="') == len(CHARTS)
    assert "Plotly.newPlot" in html and "plotly.js" in html.lower()


def test_stats_and_report_show_the_same_figures(report, planted_run, second_run, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    assert main(["stats", str(planted_run), str(second_run)]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = _tables(report)["stats-table"]
    assert table[0] == ["metric", planted_run.name, second_run.name]
    assert len(table) == len(STATS_ROWS) + 1
    for label, *cells in table[1:]:
        line = next(line for line in printed if f" {label} " in line)
        assert [c.strip() for c in line.strip("│┃ ").split("│")] == [label, *cells]


def test_the_database_table_groups_by_source_database(report, planted_run, second_run):
    rows = {r[0]: r for r in _tables(report)["database-table"][1:]}
    assert set(rows) == {"clinic.sqlite", Path(OTHER_DATABASE).name}
    other = rows[Path(OTHER_DATABASE).name]
    assert other[1:6] == [planted_run.name, "1", "4", "0", "100.0%"]
    clinic = rows["clinic.sqlite"]
    every = [r for run in (planted_run, second_run) for name in (rf.DIALOGUES, rf.REJECTED)
             for r in RunFolder(run).read_lines(name)]
    assert int(clinic[3]) + int(clinic[4]) == len(every) - 4
    assert int(clinic[4]) == len(REJECTED_REASONS)


def _chromium():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        reason = "no chromium/chromedriver here (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI installs them in .ci/run")
        pytest.skip(reason)
    return chromium, driver


def test_the_report_works_in_a_real_browser(report, planted_run, tmp_path):
    chromium, chromedriver = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        browser.get(report.as_uri())
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(
            "return [...document.querySelectorAll('[data-chart]')].every(s => s.querySelector('.main-svg'))"))
        charts = browser.execute_script("""return Object.fromEntries([...document.querySelectorAll('[data-chart]')]
            .map(s => [s.dataset.chart, {traces: s.querySelectorAll('.trace').length,
                                         data: (s.querySelector('.js-plotly-plot').data || []).length}]))""")
        assert set(charts) == CHARTS
        assert all(c["traces"] > 0 and c["data"] > 0 for c in charts.values()), charts

        items = lambda: browser.find_elements(By.CSS_SELECTOR, "#dialogue-list .dialogue-item")  # noqa: E731
        everything = len(items())
        Select(browser.find_element(By.ID, "filter-status")).select_by_value("rejected")
        assert len(items()) == len(REJECTED_REASONS) < everything
        assert {i.find_element(By.CSS_SELECTOR, ".badge").text for i in items()} == {"rejected"}
        Select(browser.find_element(By.ID, "filter-status")).select_by_value("all")
        Select(browser.find_element(By.ID, "filter-database")).select_by_visible_text(Path(OTHER_DATABASE).name)
        assert len(items()) == 4
        Select(browser.find_element(By.ID, "filter-database")).select_by_value("")
        target = json.loads(next(line for line in (planted_run / rf.DIALOGUES).read_text().splitlines()))
        browser.find_element(By.ID, "filter-text").send_keys(target["id"])
        assert [i.get_attribute("data-id") for i in items()] == [target["id"]]

        items()[0].click()
        calls = [c for m in target["messages"] for c in m.get("tool_calls") or []]
        shown = browser.find_elements(By.CSS_SELECTOR, "#dialogue-detail .tool-call")
        assert [s.find_element(By.CSS_SELECTOR, ".tool-name").text for s in shown] == \
            [c["function"]["name"] for c in calls]
        assert [json.loads(s.find_element(By.CSS_SELECTOR, ".tool-arguments").text) for s in shown] == \
            [json.loads(c["function"]["arguments"]) for c in calls]
        results = browser.find_elements(By.CSS_SELECTOR, "#dialogue-detail .message.tool")
        assert len(results) == sum(m["role"] == "tool" for m in target["messages"])
        detail = browser.find_element(By.ID, "dialogue-detail").text
        assert target["metadata"]["tasks"][0]["goal"] in detail and "Verdict on task 1: valid" in detail
        assert target["metadata"]["tasks"][0]["rubric"]["success_criteria"][0] in detail

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        screenshot = tmp_path / "report.png"
        assert browser.save_screenshot(str(screenshot))
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    finally:
        browser.quit()
