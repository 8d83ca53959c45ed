"""The inspector page in headless Chromium (Debian's `chromium`, driven by Playwright for
Python): every view against a server with fixture data, DOM assertions, hostile names shown as
text, Confirm clicked and seen through the API, and a screenshot of each view in
target/ui-screenshots/. Playwright because it drives the system's Chromium with real clicks
and waits, from PyPI, with no Node build step; run by tests/it/ui.rs."""

import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

KEY = "ui-key-0000"
HOSTILE_TAG = '"><img src=x onerror="window.hacked=1">'
HOSTILE_NAME = "<script>window.hacked=1</script>"
SHOTS = pathlib.Path(os.environ.get("UI_SCREENSHOTS", "target/ui-screenshots"))


def api(url, method, **params):
    form = urllib.parse.urlencode({"api_key": KEY, **params}).encode()
    with urllib.request.urlopen(f"{url}/en/api/{method}?format=json", form) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory() as directory:
        ready = pathlib.Path(directory, "ready")
        process = subprocess.Popen(
            [os.environ["UNISENDER_LOCAL_BIN"], "serve", "--listen", "127.0.0.1:0", "--quiet",
             "--db", str(pathlib.Path(directory, "ui.db")), "--account", f"shop:{KEY}",
             "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            url = ready.read_text().strip()
            list_id = api(url, "createList", title="News")["result"]["id"]
            api(url, "createField", name="City", type="string")
            form = {"field_names[0]": "email", "field_names[1]": "tags",
                    "field_names[2]": "email_list_ids", "field_names[3]": "City"}
            for n in range(120):
                form[f"data[{n}][0]"] = f"person{n:03}@example.com"
                form[f"data[{n}][1]"] = HOSTILE_TAG if n == 1 else "vip"
                form[f"data[{n}][2]"] = str(list_id)
                form[f"data[{n}][3]"] = HOSTILE_NAME if n == 1 else "Paris"
            assert api(url, "importContacts", **form)["result"]["inserted"] == 120
            api(url, "subscribe", list_ids=list_id, **{"fields[email]": "invited@example.com"})
            api(url, "async/exportContacts")
            request = urllib.request.Request(
                url + "/_local/faults", method="POST",
                data=json.dumps({"method": "getTags", "times": 3, "http_status": 503}).encode())
            urllib.request.urlopen(request).read()
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
        yield page
        assert page.evaluate("window.hacked === undefined"), "a hostile name ran as script"
        browser.close()


def test_accounts(server, page):
    page.goto(server + "/_local/ui")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("shop")
    cells = row.locator("td").all_inner_texts()
    assert cells == ["shop", "121", "1", "1", "2"], cells
    page.screenshot(path=str(SHOTS / "accounts.png"), full_page=True)


def test_contacts_page_filter_and_record(server, page):
    page.goto(server + "/_local/ui#contacts")
    expect(page.locator("#view[data-view='contacts'] tbody tr")).to_have_count(50)
    expect(page.locator("tbody tr").first).to_contain_text("person000@example.com")
    page.click("#next")
    expect(page.locator("tbody tr").first).to_contain_text("person050@example.com")
    page.click("#next")
    expect(page.locator("tbody tr")).to_have_count(21)
    expect(page.locator("#next")).to_be_disabled()
    # A hostile tag is a filter value and a cell like any other: text.
    page.fill("#tag", HOSTILE_TAG)
    page.click("#apply")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr td").nth(7)).to_have_text(HOSTILE_TAG)
    page.screenshot(path=str(SHOTS / "contacts.png"), full_page=True)
    page.locator("tbody tr").first.click()
    record = page.locator("#contact")
    expect(record).to_contain_text("person001@example.com")
    expect(record).to_contain_text("News")
    expect(record.locator("#tags .pill")).to_have_text([HOSTILE_TAG])
    expect(record).to_contain_text(HOSTILE_NAME)
    assert page.locator("#contact img").count() == 0 and page.locator("#contact script").count() == 0
    page.screenshot(path=str(SHOTS / "contact.png"), full_page=True)
    page.fill("#tag", "")
    page.fill("#search", "invited@example.com")
    page.click("#apply")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr td").nth(2)).to_have_text("invited")


def test_journal_refreshes_by_itself(server, page):
    page.goto(server + "/_local/ui#journal")
    expect(page.locator("#journal tbody tr").first).to_be_visible()
    api(server, "getLists")
    expect(page.locator("#journal tbody tr").first.locator("td").nth(3)).to_have_text("getLists", timeout=5000)
    first = page.locator("#journal tbody tr").first
    first.locator("summary").nth(1).click()
    expect(first.locator("pre.sent")).to_contain_text("…0000")
    first.locator("summary").nth(0).click()
    expect(first.locator("pre.answer")).to_contain_text('"title": "News"')
    # A new call redraws the journal; what was opened stays open.
    api(server, "getFields")
    expect(page.locator("#journal tbody tr").first.locator("td").nth(3)).to_have_text("getFields", timeout=5000)
    expect(page.locator("#journal tbody tr").nth(1).locator("pre.answer")).to_be_visible()
    assert KEY not in page.content()
    page.screenshot(path=str(SHOTS / "journal.png"), full_page=True)


def test_exports_with_download_links(server, page):
    deadline = time.monotonic() + 30
    while True:
        page.goto(server + "/_local/ui#exports")
        expect(page.locator("#view h3")).to_have_text(["shop"])
        if page.locator("#view a", has_text="download").count() == 1:
            break
        assert time.monotonic() < deadline, "the export finished"
        time.sleep(0.2)
    href = page.locator("#view a").get_attribute("href")
    with urllib.request.urlopen(href) as answer:
        assert answer.read().startswith(b"id,email,")
    page.screenshot(path=str(SHOTS / "exports.png"), full_page=True)


def test_outbox_confirm_makes_the_contact_active(server, page):
    page.goto(server + "/_local/ui#outbox")
    row = page.locator("#view[data-view='outbox'] tbody tr").first
    expect(row).to_contain_text("invited@example.com")
    page.screenshot(path=str(SHOTS / "outbox.png"), full_page=True)
    row.locator("button.confirm").click()
    expect(page.locator("tbody tr").first.locator("td").nth(4)).to_contain_text("from 127.0.0.1")
    contact = api(server, "getContact", email="invited@example.com", include_lists=1)["result"]
    assert contact["email"]["status"] == "active"
    assert contact["lists"][0]["status"] == "active"


def test_fault_rules(server, page):
    page.goto(server + "/_local/ui#faults")
    row = page.locator("#view[data-view='faults'] tbody tr").first
    expect(row).to_contain_text("getTags")
    cells = row.locator("td").all_inner_texts()
    assert cells == ["1", "getTags", "any", "HTTP 503", "3", "0"], cells
    page.screenshot(path=str(SHOTS / "faults.png"), full_page=True)
