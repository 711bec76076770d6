"""Make docs/web-view.png: the web view in the tests' headless Chromium, against a real server (a throwaway CA,
as in the tests) with a few jobs of alice's, one of them followed while it runs.

Run from the repository: `.venv/bin/python tests/web_view_screenshot.py docs/web-view.png`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from browser import browser_problem, home_trusting, launch
from support import Users, mint_tls, start_server
from workerctl.store.users import add_user

JOBS = [  # (command, fields of the start), oldest first
    ("sleep 600", {"labels": ["scratch"]}),
    ("echo fetching; echo fetched 3 files", {"labels": ["nightly", "fetch"]}),
    ("for step in lint unit integration; do echo \"$step: ok\"; done; echo 'integration: 2 failures'; exit 3",
     {"labels": ["nightly", "tests"]}),
    ("sleep 30", {"limits": {"timeoutSeconds": 1}}),
    ("i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo \"frame $i: tile $((i * 7 % 64)) rendered\"; sleep 0.1; done",
     {"labels": ["render"], "limits": {"timeoutSeconds": 600, "memoryBytes": 512 * 1024**2, "cpus": 1}}),
]


def main(out: Path) -> None:
    problem = browser_problem()
    if problem is not None:
        sys.exit(problem)
    from playwright.sync_api import expect, sync_playwright

    directory = Path(tempfile.mkdtemp(prefix="web-view-"))
    tls = mint_tls(directory)
    users_file = directory / "users.toml"
    server = start_server(directory, tls, Users(users_file, {"alice": add_user(users_file, "alice")}),
                          "--job-timeout", "600")
    try:
        jobs = [server.start(command, **fields) for command, fields in JOBS]
        server.wait_running(jobs[0])
        server.call("stop", jobID=jobs[0])
        for job_id in jobs[1:4]:
            server.wait_final(job_id)
        with sync_playwright() as playwright:
            browser = launch(playwright, home_trusting(tls.ca, directory / "home"))
            page = browser.new_page(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
            page.goto(server.url + "/")
            page.get_by_label("Token").fill(server.users.tokens["alice"])
            page.get_by_label("Token").press("Enter")
            page.get_by_role("button", name=jobs[-1], exact=True).click()
            expect(page.locator("#output")).to_contain_text("frame 12:")
            page.locator("#command").fill("make -C ~/site publish")
            page.locator("#labels").fill("site")
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
