"""A real browser for the web view's tests: Debian's Chromium, driven by playwright, trusting the tests'
throwaway CA with certificate checks on.

Chromium on Linux takes the certificate authorities a user adds from the NSS database in ~/.pki/nssdb; each
browser gets a HOME of its own whose database trusts exactly the test CA (made with certutil, from
libnss3-tools), so the server's certificate and its host name are checked as they would be for a user.
Nothing here downloads a browser: .ci/run installs Debian's `chromium` and `libnss3-tools`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")


def browser_problem() -> str | None:
    """Why no browser test can run here, or None."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: install Debian's chromium package (.ci/run does)"
    if shutil.which("certutil") is None:
        return "no certutil to make Chromium trust the tests' CA: install Debian's libnss3-tools (.ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[test]'"
    return None


def home_trusting(ca: Path, home: Path) -> Path:
    """`home`, with an NSS database that trusts `ca` to identify web sites."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    name = f"sql:{database}"
    subprocess.run(["certutil", "-d", name, "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-d", name, "-A", "-n", "workerctl test CA", "-t", "C,,", "-i", str(ca)],
                   check=True, capture_output=True)
    return home


def launch(playwright: Any, home: Path) -> Any:
    """A headless Chromium whose HOME is `home`. (Playwright runs it with --no-sandbox, which it needs as root.)"""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), env={**os.environ, "HOME": str(home)})
