"""Fire imported without asyncio and with its help modules put off (client/cli/fire_import.py): in a fresh
interpreter, since what matters is what a command's own process imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_binding_a_command_line_imports_neither_asyncio_nor_fires_help():
    out = run_python("""
        import sys
        from workerctl.cli.fire_adapter import parse
        from workerctl.cli.job_commands import JOB_COMMANDS
        command, values = parse(JOB_COMMANDS, ["status", "123e4567"])
        assert (command.name, values["job_id"]) == ("status", "123e4567"), values
        print("asyncio" in sys.modules, type(sys.modules["fire.helptext"]).__name__)
    """)
    assert out.split() == ["False", "_LazyModule"]


def test_fire_still_explains_usage_errors_and_knows_coroutine_functions():
    out = run_python("""
        import sys
        from workerctl.cli.exit_status import CliError
        from workerctl.cli.fire_adapter import parse
        from workerctl.cli.fire_import import import_fire
        from workerctl.cli.job_commands import JOB_COMMANDS
        try:
            parse(JOB_COMMANDS, ["status", "a", "b"])
        except CliError as error:
            print(error.message)
        fire = import_fire()

        async def coroutine():
            return 5

        def plain():
            return 6

        print(fire.inspectutils.IsCoroutineFunction(coroutine), fire.inspectutils.IsCoroutineFunction(plain))
        print(fire.Fire(coroutine, command=[]), "asyncio" in sys.modules)
    """)
    assert out.splitlines() == ["unexpected argument 'b' for status (see 'workerctl status --help')",
                                "True False", "5", "5 True"]
