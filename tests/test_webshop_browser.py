"""The reference shop end to end in a real, headless Chromium (Debian's, driven by Playwright).

The app runs on a free loopback port in a thread of this process, started as ``make serve``
starts it (its dispatcher posts the shop's own events to that port); the tests run the
dispatcher themselves after each decision, so that nothing waits on a timer. Every page
visited is saved as a screenshot into ``$WEBSHOP_SCREENSHOTS`` (default: a folder in pytest's
temporary directory); ``docs/screenshots/`` holds a committed set made this way.

Chromium and ``libatomic1`` (which Playwright's driver needs) are installed with apt-get when
missing and the tests run as root; otherwise the tests are skipped with a message, and with
``CI=true`` a missing browser is a failure.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from flask import Flask
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from retouraanvraag import Status

from .webshop_support import Services, photo_png, start

CHROMIUM: Final = Path("/usr/bin/chromium")
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FIETS: Final = "fietsenwinkel"

# A loaded machine (CI shares two cores) may take a while to answer; nothing here waits on a
# timer, so a generous ceiling costs nothing when all is well.
expect.set_options(timeout=20_000)


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append("chromium")
    if ctypes.util.find_library("atomic") is None:
        missing.append("libatomic1")
    return missing


def _install(packages: list[str]) -> None:
    """``apt-get install`` what is missing (as root only)."""
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = shutil.which("apt-get")
    if apt is None:
        return
    subprocess.run([apt, "update"], check=True, env=environment, capture_output=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [apt, "install", "-y", *packages],
        check=True,
        env=environment,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed when missing and possible; else a skip (a failure in CI)."""
    missing = _missing()
    if missing and hasattr(os, "geteuid") and os.geteuid() == 0:
        _install(missing)
        missing = _missing()
    if missing:
        message = (
            f"the browser tests need {' and '.join(missing)}: "
            "run `apt-get install -y chromium libatomic1` as root"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Flask, Services]]:
    # As `make serve` runs it, on a free port: the dispatcher posts the shop's own events to it.
    shop = start(tmp_path_factory.mktemp("webshop-browser"), port=0, worker=False)
    yield shop.url, shop.app, shop.services
    shop.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("WEBSHOP_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser_context(
    chromium: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=list(FLAGS),
            viewport={"width": 1280, "height": 860},
            locale="nl-NL",
        )
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture
def console() -> list[str]:
    """The console errors of the test's tab (a CSP violation, a failed script, a 404)."""
    return []


@pytest.fixture
def page(browser_context: BrowserContext, console: list[str]) -> Iterator[Page]:
    """A fresh tab; any console error fails the test."""
    tab = browser_context.new_page()

    def record(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.append(message.text)

    tab.on("console", record)
    tab.on("pageerror", lambda error: console.append(str(error)))
    yield tab
    tab.close()
    assert console == []


def snap(page: Page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def log_in(page: Page, base: str, username: str = "anna", password: str = "fiets-2026") -> None:  # noqa: S107 - the demo's seeded login
    page.goto(f"{base}/merchant/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator("nav.tabs")).to_be_visible()


def customer_submits(
    page: Page,
    base: str,
    screenshots: Path | None,
    *,
    order: str,
    contact: str,
    line: int,
    reason: str,
    photo: Path | None = None,
) -> str:
    """Go through the portal; returns the status link."""
    p = page
    p.goto(f"{base}/{FIETS}/retour/")
    p.fill("input[name=order_number]", order)
    p.fill("input[name=contact]", contact)
    if screenshots:
        snap(p, screenshots, "portal-find")
    p.click("button[type=submit]")
    expect(p.locator("#return-form")).to_be_visible()
    with p.expect_response(lambda r: r.url.endswith("/voorbeeld")):
        p.select_option(f"select[name=quantity_{line}]", "1")
    with p.expect_response(lambda r: r.url.endswith("/voorbeeld")):
        p.select_option(f"select[name=reason_{line}]", reason)
    if photo is not None:
        p.set_input_files(f"input[name=photo_{line}]", str(photo))
    if screenshots:
        snap(p, screenshots, "portal-items")
    p.click("button.primary")
    expect(p.locator("#status")).to_be_visible()
    url: str = p.url
    return url


def newest_waiting(services: Services) -> str:
    return services.desk.requests_tab(FIETS, rejected=False, limit=500).items[-1].id


def test_a_return_with_a_photo_is_filtered_approved_and_its_label_reaches_the_customer(  # noqa: PLR0915 - one story, read top to bottom
    page: Page, server: tuple[str, Flask, Services], screenshots: Path, tmp_path: Path
) -> None:
    base, _app, services = server
    photo = tmp_path / "kapot-slot.png"
    photo.write_bytes(photo_png())
    p = page
    # The gift card of order F1001 is greyed out with the rule's message.
    p.goto(f"{base}/{FIETS}/retour/")
    p.fill("input[name=order_number]", "F1001")
    p.fill("input[name=contact]", "jan@example.nl")
    p.click("button[type=submit]")
    expect(p.locator("#line-2")).to_have_class(re.compile(r"\brefused\b"))
    expect(p.locator("#line-2-note")).to_contain_text("kan niet worden geretourneerd")
    expect(p.locator("select[name=quantity_2]")).to_be_disabled()
    # Order F1005 comes from Switzerland: the fee appears as soon as an item is chosen.
    p.goto(f"{base}/{FIETS}/retour/")
    p.fill("input[name=order_number]", "F1005")
    p.fill("input[name=contact]", "8001")
    p.click("button[type=submit]")
    # Urs reads English: the portal speaks the customer's language once the order is found.
    expect(p.locator("#fee")).to_contain_text("No return fee")
    p.select_option("select[name=quantity_0]", "1")
    p.select_option("select[name=reason_0]", "too_small")
    expect(p.locator("#fee")).to_contain_text("€4.95")
    expect(p.locator("#line-1")).to_have_class(re.compile(r"\brefused\b"))
    snap(p, screenshots, "portal-fee")

    status_url = customer_submits(
        p,
        base,
        screenshots,
        order="F1004",
        contact="9711 EF",
        line=0,
        reason="too_small",
        photo=photo,
    )
    expect(p.locator("#status")).to_contain_text("Waiting for review")  # Sanne reads English
    snap(p, screenshots, "portal-status-waiting")
    request_id = newest_waiting(services)
    stored = services.desk.get(FIETS, request_id)
    assert stored.items[0].photos

    log_in(p, base)
    row = p.locator(f"#row-{request_id}")
    expect(row).to_be_visible()
    count = int(p.inner_text("h1 .count"))
    assert count == len(services.desk.requests_tab(FIETS, limit=500).items)
    snap(p, screenshots, "merchant-requests")

    # Filter by a rule: the Belgian request waiting in the tab drops out, ours stays.
    belgian = next(
        r for r in services.desk.requests_tab(FIETS, limit=500).items if r.from_country == "BE"
    )
    expect(p.locator(f"#row-{belgian.id}")).to_be_visible()
    p.fill("#rule", 'Retourreden IS "Te klein" EN Van land IS Nederland')
    expect(p.locator(f"#row-{belgian.id}")).to_have_count(0)
    expect(row).to_be_visible()
    snap(p, screenshots, "merchant-requests-filtered")
    # A typo in the condition: the checker's caret stands under the mistaken word.
    p.fill("#rule", "Van land IS Nederlnd")
    caret = p.locator("#filter-diagnostics pre.caret-line")
    expect(caret).to_contain_text("Nederlnd")
    assert caret.get_attribute("data-column") == "13"
    assert caret.inner_text().index("^") == 12
    box = p.locator("#rule").bounding_box()
    mark = p.locator("#filter-diagnostics pre.caret-line").bounding_box()
    assert box is not None
    assert mark is not None
    assert abs(box["x"] - mark["x"]) < 2  # the caret line starts where the box does
    snap(p, screenshots, "merchant-filter-diagnostic")

    p.fill("#rule", "")
    p.click(f"#row-{request_id} a.button")
    expect(p.locator("#detail-status")).to_have_text("requested")
    image = p.locator("img.photo").first
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") == 160
    expect(p.locator("#audit")).to_contain_text("regels versie")
    snap(p, screenshots, "merchant-request")
    p.click("#approve-form button[type=submit]")
    expect(p.locator(".flash.ok")).to_contain_text("Approved with a label")
    services.dispatcher.run_until_idle()
    decided = services.desk.get(FIETS, request_id)
    assert decided.status is Status.APPROVED
    assert decided.label is not None

    # The shop heard its own events on its webhook: the approval and the label made.
    p.goto(f"{base}/merchant/events")
    approved = p.locator(f'#events tr[data-type="approved"][data-request="{request_id}"]')
    expect(approved).to_contain_text("staff:anna")
    expect(
        p.locator(f'#events tr[data-type="label_created"][data-request="{request_id}"]')
    ).to_be_visible()
    snap(p, screenshots, "merchant-events")

    p.goto(f"{base}/merchant/mails")
    mail_row = p.locator(f'tr[data-kind="label_created"][data-request="{request_id}"]')
    expect(mail_row).to_contain_text("retourlabel.pdf")
    snap(p, screenshots, "merchant-mails")
    mail_row.locator("a").first.click()
    expect(p.locator("#attachments")).to_contain_text("retourlabel.pdf")
    href = p.locator("#attachments a").first.get_attribute("href")
    pdf = p.request.get(f"{base}{href}").body()
    assert pdf.startswith(b"%PDF-1.4")
    content = pdf.split(b"stream\n")[1].split(b"\nendstream")[0]
    assert decided.label.tracking_number.encode() in zlib.decompress(content)
    expect(p.frame_locator("iframe.mail-html").locator("body")).to_contain_text(
        decided.label.tracking_number
    )
    snap(p, screenshots, "merchant-mail")

    p.goto(status_url)
    expect(p.locator("#label")).to_contain_text(decided.label.tracking_number)
    expect(p.locator("#status")).to_contain_text("Approved")
    snap(p, screenshots, "portal-status-label")
    label = p.request.get(f"{base}{p.locator('#label a').get_attribute('href')}")
    assert label.body() == decided.label.document


def test_a_rejection_with_a_preset_reason_reaches_the_customers_page_and_mail(
    page: Page, server: tuple[str, Flask, Services], screenshots: Path
) -> None:
    base, _app, services = server
    p = page
    status_url = customer_submits(
        p, base, None, order="F1006", contact="noor@example.nl", line=1, reason="changed_mind"
    )
    request_id = newest_waiting(services)
    log_in(p, base)
    p.goto(f"{base}/merchant/requests/{request_id}")
    p.select_option("#reject-form select[name=preset]", "not_returnable")
    p.click("#reject-form button[type=submit]")
    expect(p.locator(".flash.ok")).to_contain_text("Rejected")
    preset = services.shops[FIETS].settings.reject_reason("not_returnable").nl  # Noor reads nl
    expect(p.locator("#detail-reject-reason")).to_have_text(preset)
    services.dispatcher.run_until_idle()

    p.goto(f"{base}/merchant/mails")
    p.locator(f'tr[data-kind="rejected"][data-request="{request_id}"] a').first.click()
    expect(p.locator("#mail-text")).to_contain_text(preset)
    snap(p, screenshots, "merchant-mail-rejected")

    p.goto(status_url)
    expect(p.locator("#status")).to_contain_text("Afgewezen")
    expect(p.locator("#reject-reason")).to_contain_text(preset)
    snap(p, screenshots, "portal-status-rejected")


def test_a_typo_in_the_rules_editor_shows_the_diagnostic_at_its_place(
    page: Page, server: tuple[str, Flask, Services], screenshots: Path
) -> None:
    base, _app, _services = server
    p = page
    log_in(p, base)
    p.goto(f"{base}/merchant/rules")
    expect(p.locator("#diagnostics")).to_contain_text("No problems")
    text = (
        "# Twee regels\n"
        "ALS Van land IS Nederland DAN Retouraanvraag uitschakelen\n"
        "ALS Retourwaarde GROTER DAN €500 DAN Retouraanvraag inschakelne\n"
    )
    p.fill("#rules-text", text)
    diagnostic = p.locator("#diagnostics .diagnostic.error").first
    expect(diagnostic).to_have_attribute("data-line", "3")
    column = int(diagnostic.get_attribute("data-column") or "0")
    line = text.split("\n")[2]
    assert line[column - 1 :] == "Retouraanvraag inschakelne"  # the unknown action
    shown = diagnostic.locator("pre").inner_text().split("\n")
    assert shown[0] == line
    assert shown[1].index("^") == column - 1
    snap(p, screenshots, "merchant-rules-diagnostic")
    diagnostic.click()
    offset = len(text.split("\n", maxsplit=1)[0]) + 1 + len(text.split("\n")[1]) + 1 + column - 1
    assert p.evaluate("document.getElementById('rules-text').selectionStart") == offset
    # Put right, the diagnostics clear as one types; then translate it into English.
    p.fill("#rules-text", text.replace("inschakelne", "inschakelen"))
    expect(p.locator("#diagnostics")).to_contain_text("No problems")
    p.click("button[value=en]")
    expect(p.locator("#rules-text")).to_have_value(re.compile(r"IF From country IS Netherlands"))
    snap(p, screenshots, "merchant-rules")


def test_several_requests_are_approved_at_once_from_the_tab(
    page: Page, server: tuple[str, Flask, Services], screenshots: Path
) -> None:
    base, _app, services = server
    p = page
    ids = []
    for order, contact in (("F1001", "1234 AB"), ("F1002", "2000")):
        customer_submits(p, base, None, order=order, contact=contact, line=1, reason="defective")
        ids.append(newest_waiting(services))
    log_in(p, base)
    for request_id in ids:
        p.check(f"#row-{request_id} input[name=ids]")
    snap(p, screenshots, "merchant-bulk-selected")
    p.click("#bulk button[value=approve_without_label]")
    results = p.locator("#bulk-results tbody tr")
    expect(results).to_have_count(2)
    for request_id in ids:
        row = p.locator(f'#bulk-results tr[data-request="{request_id}"]')
        expect(row).to_contain_text("ok: approved_without_return")
        assert services.desk.get(FIETS, request_id).status is Status.APPROVED_WITHOUT_RETURN
    snap(p, screenshots, "merchant-bulk-results")


def test_another_shops_request_id_in_a_url_gives_404(
    page: Page, server: tuple[str, Flask, Services], screenshots: Path, console: list[str]
) -> None:
    base, _app, services = server
    p = page
    theirs = services.desk.requests_tab("bookshop", limit=1).items[0].id
    log_in(p, base)
    response = p.goto(f"{base}/merchant/requests/{theirs}")
    assert response is not None
    assert response.status == 404
    expect(p.locator("h1")).to_contain_text("404")
    assert console == [
        "Failed to load resource: the server responded with a status of 404 (NOT FOUND)"
    ]
    console.clear()
    snap(p, screenshots, "merchant-404")
    for path, name in (
        ("/merchant/incoming", "merchant-incoming"),
        ("/merchant/history", "merchant-history"),
        ("/merchant/attention", "merchant-attention"),
        ("/", "index"),
    ):
        answer = p.goto(f"{base}{path}")
        assert answer is not None
        assert answer.status == 200
        snap(p, screenshots, name)
