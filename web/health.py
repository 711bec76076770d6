"""Health and readiness, for load balancers and orchestrators: `GET /healthz` answers 200 while this front end
serves; `GET /readyz` answers 200 when a start would be taken now, else 503 with the JSON error saying why (the
supervisor restarting, the server shutting down; for a cluster's front end, Redis down or no agent holding a
lease). Neither needs a token nor counts against a rate limit, and neither is logged at INFO: a balancer asks
every few seconds.
"""

from __future__ import annotations

from typing import ClassVar

from workerctl.web.answers import JsonHandler
from workerctl.web.job_link import JobLink


class HealthHandler(JsonHandler):
    """`GET /healthz`: this process serves."""

    ALLOWED_METHODS: ClassVar[str] = "GET"
    quiet = True  # log_request: at DEBUG

    def get(self) -> None:
        self._finish_json({"status": "serving"})


class ReadinessHandler(JsonHandler):
    """`GET /readyz`: a start would be taken now."""

    ALLOWED_METHODS: ClassVar[str] = "GET"
    quiet = True

    def initialize(self, link: JobLink) -> None:
        self.link = link

    async def get(self) -> None:
        problem = await self.link.unready()
        if problem is not None:
            self.set_status(503)
            self._finish_json({"error": problem})
        else:
            self._finish_json({"status": "ready"})
