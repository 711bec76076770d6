"""The web view in a real browser: Debian's Chromium, headless, against a real server over TLS that it verifies
(tests/browser.py). A user signs in with their token, sees jobs started elsewhere appear, follows output live,
stops a job and starts one; nobody sees another user's jobs, job output never runs as HTML, and a wrong token is
refused on the page. Waits are playwright's expectations, which retry until they hold or time out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import browser_problem, home_trusting, launch
from facilities import needs
from support import Server

needs("browser", browser_problem())
pytestmark = pytest.mark.slow  # a real browser

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402 - only where there is a browser

expect.set_options(timeout=15_000)

APPEARS_WITHIN_MS = 2000
"""How soon a job started elsewhere must show in the list."""


@pytest.fixture(scope="module")
def browser(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = home_trusting(server.tls.ca, tmp_path_factory.mktemp("browser-home"))
    with sync_playwright() as playwright:
        chromium = launch(playwright, home)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any, server: Server) -> Iterator[Callable[[], Page]]:
    """Open the web view in a fresh browser context (as a new visitor); fails the test if any page threw an
    error or broke the Content-Security-Policy or Trusted Types."""
    contexts, faults = [], []

    def opened() -> Page:
        context = browser.new_context(ignore_https_errors=False)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: faults.append(str(error)))
        page.on("console", lambda message: faults.append(message.text) if message.type == "error" and any(
            word in message.text for word in ("Content Security Policy", "Trusted Type")) else None)
        page.goto(server.url + "/")
        return page

    yield opened
    for context in contexts:
        context.close()
    assert not faults, faults


@pytest.fixture
def signed_in(open_page: Callable[[], Page], server: Server) -> Callable[[str], Page]:
    def sign_in(user: str) -> Page:
        page = open_page()
        # Keyboard only: the token field has the focus when the page opens, and Enter signs in.
        expect(page.locator("input[type=password]")).to_be_focused()
        page.keyboard.type(server.users.tokens[user])
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Your jobs")).to_be_visible()
        return page

    return sign_in


def output_of(page: Page) -> Any:
    return page.locator("#output")


def test_sign_in_keeps_the_token_in_memory_only(signed_in, server):
    page = signed_in("alice")
    assert page.url == server.url + "/"
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    expect(page.locator("input[type=password]")).to_be_hidden()
    token = server.users.tokens["alice"]
    assert token not in page.content()
    assert token not in server.log()


def test_a_wrong_token_is_refused_on_the_page(open_page, server):
    page = open_page()
    page.get_by_label("Token").fill("not-" + server.users.tokens["alice"])
    page.get_by_label("Token").press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("token")
    expect(page.get_by_role("heading", name="Your jobs")).to_be_hidden()
    assert page.url == server.url + "/"


def test_a_job_started_from_the_command_line_appears_within_2_seconds(signed_in, server, tmp_path):
    page = signed_in("alice")
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WORKERCTL_SERVER": server.url,
                   "WORKERCTL_TOKEN": server.users.tokens["alice"], "WORKERCTL_CA": str(server.tls.ca)}
    started = subprocess.run([sys.executable, "-m", "workerctl", "start", "--json", "echo from the command line"],
                             capture_output=True, text=True, env=environment, timeout=60)
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["jobID"]
    expect(page.get_by_role("button", name=job_id, exact=True)).to_be_visible(timeout=APPEARS_WITHIN_MS)
    row = page.get_by_role("row").filter(has=page.get_by_role("button", name=job_id, exact=True))
    expect(row).to_contain_text("echo from the command line")
    expect(row).to_contain_text("finished")  # the list keeps itself up to date
    expect(row).to_contain_text("exit code 0")


def test_output_is_live_and_stop_stops_the_job(signed_in, server):
    page = signed_in("alice")
    job_id = server.start("i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done")
    page.get_by_role("button", name=job_id, exact=True).click()
    output = output_of(page)
    expect(output).to_contain_text("tick 1")
    seen = output.text_content()
    expect(output).not_to_have_text(seen)  # more arrives without a reload
    assert output.text_content().startswith(seen)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#job-state")).to_contain_text(f"{job_id} is stopped")
    assert server.status(job_id)["status"] == "stopped"
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    row = page.get_by_role("row").filter(has=page.get_by_role("button", name=job_id, exact=True))
    expect(row).to_contain_text("stopped")


def test_a_command_started_from_the_page_runs_with_its_labels_and_limits(signed_in, server):
    page = signed_in("alice")
    command = page.locator("input[type=text], input:not([type]), textarea").first
    expect(command).to_be_focused()
    command.fill("echo started from the page $((6 * 7))")
    page.get_by_label("Labels").fill("web, demo")
    command.press("Enter")
    expect(output_of(page)).to_contain_text("started from the page 42")
    job = next(job for job in server.call("list").body["jobs"] if job["command"].startswith("echo started from"))
    assert job["labels"] == ["web", "demo"]
    details = page.locator("#job")
    expect(details).to_contain_text(job["jobID"])
    expect(details).to_contain_text("finished")
    expect(details.get_by_role("listitem")).to_have_text(["web", "demo"])
    expect(details).to_contain_text(f"time {job['limits']['timeoutSeconds']:g} s")
    row = page.get_by_role("row").filter(has=page.get_by_role("button", name=job["jobID"], exact=True))
    expect(row.get_by_role("listitem")).to_have_text(["web", "demo"])


def test_bob_never_sees_alices_jobs(signed_in, server):
    alices = server.start("echo alice's own", user="alice")
    alice, bob = signed_in("alice"), signed_in("bob")
    bobs = server.start("echo bob's own", user="bob")
    expect(bob.get_by_role("button", name=bobs, exact=True)).to_be_visible()
    expect(alice.get_by_role("button", name=alices, exact=True)).to_be_visible()
    # Both lists have been brought up to date since both jobs were started.
    newer = server.start("true", user="alice")
    expect(alice.get_by_role("button", name=newer, exact=True)).to_be_visible()
    bob_newer = server.start("true", user="bob")
    expect(bob.get_by_role("button", name=bob_newer, exact=True)).to_be_visible()
    assert alices not in bob.content() and "alice's own" not in bob.content()
    assert bobs not in alice.content() and "bob's own" not in alice.content()


def test_job_output_and_commands_are_shown_as_text_and_never_run(signed_in, server):
    page = signed_in("alice")
    script = "<script>window.pwned = 1</script>"
    image = '<img src=x onerror="window.pwned = 2">'
    job_id = server.start(f"printf '%s\\n' '{script}' '{image}' # {image}", labels=[image])
    server.wait_final(job_id)
    page.get_by_role("button", name=job_id, exact=True).press("Enter")  # the keyboard does what a click does
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_focused()
    expect(output_of(page)).to_have_text(f"{script}\n{image}\n")
    row = page.get_by_role("row").filter(has=page.get_by_role("button", name=job_id, exact=True))
    expect(row).to_contain_text(f"# {image}")
    expect(row.get_by_role("listitem")).to_have_text(image)
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.pwned") is None
