"""The HTTPS floor: the least a Tornado server can do per request, to compare workerctl's front end with.

One process, one handler: read a JSON body, answer a small JSON object of the same shape as a status answer.
No authentication, no storage. Run as `python -m bench.floor_server CERT KEY`; it prints its port on stdout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys

import tornado.httpserver
import tornado.web

_ANSWER = {"jobID": "j" + "a" * 26, "status": "finished", "command": "echo hello", "exitCode": 0, "signal": None,
           "reason": None, "createdAt": "2026-01-01T00:00:00.000Z", "startedAt": "2026-01-01T00:00:00.001Z",
           "endedAt": "2026-01-01T00:00:00.002Z", "output": "hello\n", "outputBytes": 6, "outputDropped": 0,
           "nextOffset": 6}


class JsonHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        request = json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({**_ANSWER, "jobID": request.get("jobID", _ANSWER["jobID"])}).encode() + b"\n")


def _log_nothing(handler: tornado.web.RequestHandler) -> None:
    pass


async def serve(cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    application = tornado.web.Application([(r"/", JsonHandler)], log_function=_log_nothing)
    server = tornado.httpserver.HTTPServer(application, ssl_options=context)
    listening = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listening.setblocking(False)
    server.add_sockets([listening])
    print(listening.getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
