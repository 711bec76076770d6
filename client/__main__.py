"""`python -m workerctl` and the `workerctl` command: the job commands, and where the server is installed, the
server's own (serve, users, certs), and shell completion for all of them.

This is the one module that puts the client's and the server's commands together. It stays tiny on purpose:
the server's processes are started with multiprocessing's "spawn", which imports this module again in each
of them, so everything else is imported only when a command runs.
"""

import sys


def main() -> None:
    from workerctl.cli.command_line import command_words
    from workerctl.cli.job_commands import JOB_COMMANDS
    from workerctl.cli.main import run
    from workerctl.cli.table import find_command

    args = sys.argv[1:]
    # A job command needs nothing of the server, nor Fire: the table reads its command line alone, so that a
    # status polled from cron does not import Fire (and asyncio with it, more than the rest of the status costs).
    # Anything else (serve, users, certs, completion, help, a typo) sees every command, and Fire binds it.
    if find_command(JOB_COMMANDS, command_words(JOB_COMMANDS, args)) is not None:
        sys.exit(run(args, JOB_COMMANDS))
    from workerctl.cli.completion import with_completion
    from workerctl.server.commands import SERVER_COMMANDS

    sys.exit(run(args, with_completion(JOB_COMMANDS + SERVER_COMMANDS), bind_with_fire=True))


if __name__ == "__main__":
    main()
