"""Logging for the server's processes: one line per event on stderr, naming the process it came from, with
anything that looks like a token blotted out (a client may put one where it does not belong, such as the URL
or a malformed header, and a library may log it)."""

import logging
import re
import sys

# Start-up and shutdown lines (where the server listens, when it is ready, when it stops) show at any level.
announce = logging.getLogger("workerctl.announce")

_TOKEN_LIKE = re.compile(r"(?i)(bearer\s+|token\W{0,3})[^\s\"'&,;)\\]+")


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _TOKEN_LIKE.sub(r"\1[redacted]", super().format(record))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(processName)s[%(process)d]: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Tornado's own access log would repeat ours; its warnings and errors still show.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    announce.setLevel(logging.INFO)
