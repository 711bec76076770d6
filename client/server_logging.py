"""Logging for the server's processes: one line per event on stderr, naming the process it came from."""

import logging
import sys

# Start-up and shutdown lines (where the server listens, when it is ready, when it stops) show at any level.
announce = logging.getLogger("workerctl.announce")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s[%(process)d]: %(message)s",
        force=True,
    )
    # Tornado's own access log would repeat ours; its warnings and errors still show.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    announce.setLevel(logging.INFO)
