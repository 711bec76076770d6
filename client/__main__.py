"""`python -m workerctl` and the `workerctl` command.

Kept tiny on purpose: the server's processes are started with multiprocessing's "spawn", which imports this
module again in each of them, so everything else is imported only when a command runs.
"""

import sys


def main() -> None:
    from workerctl.cli import run

    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
