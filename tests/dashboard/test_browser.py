"""End to end: a cluster runs a few thousand tasks (some erring) and headless
Chromium (Debian's ``chromium``, driven by Playwright) shows the real figures
on the dashboard.  Screenshots land in the test's tmp_path."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from typing import Any

import pytest

from taskmill import Executor, wait
from tests.dashboard.workload import fail_every_tenth, inc

try:
    from playwright.sync_api import expect
except ImportError:  # the test skips
    expect = None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def browser() -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_shows_real_figures(browser: Any, tmp_path: Any) -> None:
    with Executor(n_workers=2, threads_per_worker=2, set_as_default=False) as e:
        good = e.map(inc, range(3000))
        bad = e.map(fail_every_tenth, range(300))
        wait(good + bad)
        stream = e.get_task_stream()
        assert len(stream) == 3300
        per_worker = Counter(r["worker"] for r in stream)
        info = e.scheduler_info()["workers"]

        page = browser.new_page(viewport={"width": 1366, "height": 800})
        page.goto(e.dashboard_link)
        page.wait_for_selector('#stream-summary[data-tasks="3300"]', timeout=20_000)
        summary = page.locator("#stream-summary")
        assert summary.get_attribute("data-erred") == "30"
        assert summary.get_attribute("data-lanes") == "4"  # 2 workers x 2 threads
        inc_row = page.locator('#progress tr[data-group="inc"]')
        expect(inc_row.locator(".c-done")).to_have_text("3000")
        expect(inc_row.locator(".c-total")).to_have_text("3000")
        expect(inc_row.locator(".c-memory")).to_have_text("3000")
        bad_row = page.locator('#progress tr[data-group="fail_every_tenth"]')
        expect(bad_row.locator(".c-erred")).to_have_text("30")
        expect(bad_row.locator(".c-done")).to_have_text("270")
        assert page.locator("#n-finished").inner_text() == "3270"
        assert page.locator("#n-erred").inner_text() == "30"
        assert page.locator("#memory tbody tr").count() == 2
        page.screenshot(path=str(tmp_path / "status.png"), full_page=True)

        # the open page is updated by push, without reloading: more tasks appear
        page.evaluate("window.notReloaded = true")
        wait(e.map(inc, range(5000, 5200)))
        expect(page.locator("#n-finished")).to_have_text("3470", timeout=10_000)
        page.wait_for_selector('#stream-summary[data-tasks="3500"]', timeout=10_000)
        assert page.evaluate("window.notReloaded") is True

        # keyboard: "w" opens the workers page
        page.keyboard.press("w")
        page.wait_for_url("**/workers")
        page.wait_for_selector("#workers tbody tr[data-worker]")
        rows = page.locator("#workers tbody tr[data-worker]")
        assert rows.count() == 2
        for i in range(2):
            row = rows.nth(i)
            address = row.get_attribute("data-worker")
            assert row.locator(".c-threads").inner_text() == "2"
            assert int(row.locator(".c-stored").inner_text()) == info[address]["in_memory"]
            assert per_worker[address] > 0
            assert row.locator(".c-restarts").inner_text() == "0"
            assert row.locator(".c-process").inner_text().endswith("MB")
        page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)

        # the story of an erred task, reached from the task lookup
        page.keyboard.press("t")
        page.wait_for_url("**/task")
        page.wait_for_function("document.activeElement && document.activeElement.id === 'key'")
        page.keyboard.type(bad[0].key[:20])
        page.wait_for_selector(f'#matches a[href="/task/{bad[0].key}"]')
        page.keyboard.press("Enter")
        page.wait_for_selector("#task-error")
        assert "no multiples of ten: 0" in page.locator("#task-error").inner_text()
        assert page.locator("#task-state").inner_text() == "erred"
        story = page.locator("#story tbody tr")
        assert story.count() >= 3
        assert "erred" in story.last.inner_text()
        page.screenshot(path=str(tmp_path / "task.png"), full_page=True)
        print("screenshots in", tmp_path)


def test_a_login_link_clicked_on_another_site_opens_the_dashboard(browser: Any) -> None:
    """The owner clicks the link in a notebook (another site): the session
    cookie is SameSite=Strict, which a browser withholds from every request
    of a cross-site navigation; the login page's own forward carries it."""
    with Executor(n_workers=1, threads_per_worker=1, processes=False, set_as_default=False) as e:
        e.submit(inc, 1).result()
        assert e.dashboard_link is not None  # waits until the dashboard is up
        base = e.scheduler_info()["dashboard"].rsplit("/", 1)[0]
        stranger = browser.new_context()
        try:
            assert stranger.request.get(base + "/status").status == 401
        finally:
            stranger.close()
        owner = browser.new_context()
        try:
            page = owner.new_page()
            page.set_content(f'<a id="go" href="{e.dashboard_link}">dashboard</a>')  # opaque origin
            page.click("#go")
            page.wait_for_url("**/status")
            page.wait_for_selector('#stream-summary[data-tasks="1"]', timeout=20_000)
            [cookie] = owner.cookies()
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        finally:
            owner.close()


def test_the_header_says_when_tasks_wait_without_workers(browser: Any) -> None:
    with Executor(n_workers=0, set_as_default=False) as e:
        future = e.submit(inc, 1)
        page = browser.new_page(viewport={"width": 1366, "height": 800})
        page.goto(e.dashboard_link)
        banner = page.locator("#no-workers")
        expect(banner).to_contain_text("no worker connected: 1 tasks have waited", timeout=20_000)
        assert not future.done()
