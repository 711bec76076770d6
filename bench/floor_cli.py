"""The CLI floor: a standard-library script that makes the one request `workerctl status ID` makes.

It reads the same settings from the environment (WORKERCTL_SERVER, WORKERCTL_TOKEN_FILE, WORKERCTL_CA), checks
the certificate the same way, sends one status request and prints the status: what Python itself costs for
such a command, start-up included. Run as `python bench/floor_cli.py JOB_ID`.
"""

import http.client
import json
import os
import ssl
import sys
from urllib.parse import urlsplit


def main(job_id: str) -> int:
    server = urlsplit(os.environ["WORKERCTL_SERVER"])
    with open(os.environ["WORKERCTL_TOKEN_FILE"]) as file:
        token = file.read().strip()
    context = ssl.create_default_context(cafile=os.environ["WORKERCTL_CA"])
    connection = http.client.HTTPSConnection(server.hostname or "", server.port, context=context, timeout=30)
    connection.request("POST", "/", body=json.dumps({"action": "status", "jobID": job_id}),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 200:
        print(answer.get("error"), file=sys.stderr)
        return 1
    print(f"jobID: {answer['jobID']}\nstatus: {answer['status']}\noutput:\n{answer['output']}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
