"""Where the development material lives: the CA, server certificate, users file and token in `certs/`.

They make the quick start work with no flags, from a checkout or an editable install. They are public, so they
are for a developer's own machine only; `workerctl certs` and `workerctl users add` make real ones.
"""

from pathlib import Path

DEV_CERTS_DIR = Path(__file__).resolve().parent.parent / "certs"
DEV_CA = DEV_CERTS_DIR / "ca.pem"
DEV_SERVER_CERT = DEV_CERTS_DIR / "server.pem"
DEV_SERVER_KEY = DEV_CERTS_DIR / "server-key.pem"
DEV_USERS = DEV_CERTS_DIR / "dev-users.toml"
DEV_TOKEN_FILE = DEV_CERTS_DIR / "dev.token"
DEV_SERVER_URL = "https://127.0.0.1:8443"
