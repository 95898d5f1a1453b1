"""The explorer page end to end: `nightrec serve` over the published test version, driven in
a real headless Chromium (Debian's `chromium`, through Playwright's Python package; no
browser is downloaded). Each test checks what the page shows against the API's own answers
and that the page fetched nothing from anywhere but the API."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.serving import catalogue
from tests.serving.server import Server, fetch_json, nightrec_serve

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCARY = "scary zombie movies"
WAIT_MS = 30_000  # two shared cores: a first search may take seconds
PNG = b"\x89PNG\r\n\x1a\n"


def require_chromium() -> None:
    """Skip when Chromium is missing and cannot be installed here; fail when it could be."""
    if CHROMIUM.exists():
        return
    how = "run `bash scripts/system-deps.sh` as root (it apt-get installs chromium)"
    if os.geteuid() == 0:
        pytest.fail(f"{CHROMIUM} is missing: {how}")
    pytest.skip(f"{CHROMIUM} is missing and this user cannot install it (not root): {how}")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(browser, published, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("explore-serve") / "serve.out"
    with nightrec_serve(published, log, workers=1, threads=4) as running:
        yield running


@dataclass
class Explorer:
    """A browser page on /explore, with every request it made and every error it logged."""

    page: object
    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """Assert the page fetched only from the API and logged no error."""
        outside = [url for url in self.requests if not url.startswith(self.base + "/")]
        assert not outside, f"fetched from elsewhere: {outside}"
        assert not self.errors, self.errors


@pytest.fixture
def open_explorer(browser, server) -> Iterator[Callable[[int, int], Explorer]]:
    contexts = []

    def open_page(width: int, height: int) -> Explorer:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        explorer = Explorer(page, server.base)
        page.on("request", lambda request: explorer.requests.append(request.url))
        page.on("pageerror", lambda error: explorer.errors.append(str(error)))
        page.on(
            "console",
            lambda msg: explorer.errors.append(msg.text) if msg.type == "error" else None,
        )
        page.goto(f"{server.base}/explore")
        return explorer

    yield open_page
    for context in contexts:
        context.close()


def titles(body: dict) -> list[str]:
    return [item["title"] for item in body["items"]]


def test_search_and_similar_items_on_a_desktop(open_explorer, server, tmp_path):
    from playwright.sync_api import expect

    explorer = open_explorer(1400, 1000)
    page, base = explorer.page, server.base
    user = str(catalogue.FAN)
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Show").click()
    history = fetch_json(f"{base}/v1/users/{user}/history?n=20")
    expect(page.locator("#history .title")).to_have_text(titles(history))
    recommendations = fetch_json(f"{base}/v1/users/{user}/recommendations?n=10")
    expect(page.locator("#recommendations .title")).to_have_text(titles(recommendations))

    page.get_by_label("Search text").fill(SCARY)
    page.get_by_label("Search text").press("Enter")
    semantic = fetch_json(f"{base}/v1/search?q={quote(SCARY)}&n=10")
    assert len({i["item_id"] for i in semantic["items"][:5]} & set(catalogue.ZOMBIE)) >= 3
    expect(page.locator("#semantic .title")).to_have_text(titles(semantic))
    first = semantic["items"][0]
    expect(page.locator("#semantic .meta").first).to_contain_text(
        f"query {first['query_score']:.3f}"
    )
    personal = fetch_json(f"{base}/v1/search?q={quote(SCARY)}&user_id={user}&n=10")
    assert personal["ranking"] == "personal"
    expect(page.locator("#personal .title")).to_have_text(titles(personal))
    top = personal["items"][0]
    expect(page.locator("#personal .meta").first).to_have_text(
        f"#{top['item_id']}score {top['score']:.3f}query {top['query_score']:.3f}"
        f"cf {top['cf_score']:.3f}"
    )
    seen = {catalogue.MOVIES[i][0] for i in (*catalogue.FAN_SEEN_ZOMBIES, *catalogue.HORROR)}
    assert not seen & set(page.locator("#personal .title").all_text_contents())

    page.locator("#semantic button.item").first.click()
    similar = fetch_json(f"{base}/v1/items/{first['item_id']}/similar?n=10")
    expect(page.locator("#similar .title")).to_have_text(titles(similar))
    expect(page.locator("#similar-of")).to_contain_text(first["title"])
    clicked = page.locator(f'#semantic button.item[data-item-id="{first["item_id"]}"]')
    expect(clicked).to_have_class(re.compile(r"\bactive\b"))

    further = similar["items"][0]
    page.locator("#similar button.item").first.click()  # browse on from the similar list
    expect(page.locator("#similar-of")).to_contain_text(further["title"])
    again = fetch_json(f"{base}/v1/items/{further['item_id']}/similar?n=10")
    expect(page.locator("#similar .title")).to_have_text(titles(again))

    page.evaluate("window.scrollTo(0, 0)")  # the sticky similar panel at the top
    shot = tmp_path / "explore-desktop.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(PNG)
    explorer.assert_clean()


def test_titles_are_shown_as_text_never_as_markup(open_explorer):
    from playwright.sync_api import expect

    explorer = open_explorer(1200, 900)
    page = explorer.page
    (markup_id, (markup_title, _)) = next(iter(catalogue.MARKUP.items()))
    page.get_by_label("Search text").fill("tax audit ledger")
    page.get_by_label("Search text").press("Enter")
    expect(page.locator("#semantic .title").first).to_have_text(markup_title)
    page.locator(f'#semantic button.item[data-item-id="{markup_id}"]').click()
    expect(page.locator("#similar-of")).to_contain_text(markup_title)
    expect(page.locator("#similar .title").first).to_be_visible()
    assert page.locator("main img, main b").count() == 0
    assert page.title() == "nightrec explorer · v1"
    explorer.assert_clean()


def test_a_phone_sized_screen_with_the_keyboard_alone(open_explorer, tmp_path):
    from playwright.sync_api import expect

    explorer = open_explorer(390, 844)
    page = explorer.page
    page.get_by_label("User id").focus()
    page.keyboard.type("9")
    page.keyboard.press("Enter")
    expect(page.locator("#history .title").first).to_be_visible()
    page.get_by_label("Search text").focus()
    page.keyboard.type("animated toys")
    page.keyboard.press("Enter")
    expect(page.locator("#semantic .title")).to_have_count(10)
    expect(page.locator("#personal .title").first).to_be_visible()
    page.keyboard.press("Tab")  # the Search button
    page.keyboard.press("Tab")  # the first semantic result
    focused = page.evaluate("document.activeElement.dataset.itemId")
    first = page.locator("#semantic button.item").first.get_attribute("data-item-id")
    assert focused == first
    page.keyboard.press("Enter")
    expect(page.locator("#similar .title").first).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "similar-title"
    page.get_by_role("button", name="Back to the list").press("Enter")
    assert page.evaluate("document.activeElement.dataset.itemId") == first

    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing overflows
    semantic = page.locator("#semantic").bounding_box()
    personal = page.locator("#personal").bounding_box()
    assert personal["y"] > semantic["y"] + semantic["height"] - 1  # stacked, not side by side
    assert personal["x"] == semantic["x"]
    shot = tmp_path / "explore-phone.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(PNG)
    explorer.assert_clean()
