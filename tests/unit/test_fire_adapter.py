"""Which command lines Fire binds (client/cli/fire_adapter.py): the server's commands, with a refusal of Fire's
said in our words; never a job command, whose process imports neither Fire nor the asyncio Fire imports. Run
as the `workerctl` command, in fresh interpreters, since what matters is what a command's own process imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_workerctl(*args: str) -> tuple[int, str, str]:
    """Run `workerctl ARGS` in a fresh interpreter that then prints the top-level packages it imported of fire
    and asyncio; returns (exit status, stdout, stderr)."""
    code = textwrap.dedent(f"""
        import sys
        from workerctl.__main__ import main
        sys.argv = ["workerctl", *{list(args)!r}]
        try:
            main()
        finally:
            print(sorted(name for name in ("fire", "asyncio") if name in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_a_job_command_imports_neither_fire_nor_asyncio():
    code, out, err = run_workerctl("status", "123e4567", "--server", "https://127.0.0.1:1", "--retry", "0")
    assert code == 69 and "cannot reach" in err  # it ran, as far as a server that is not there
    assert out.splitlines()[-1] == "[]"


def test_fire_binds_the_servers_commands(tmp_path):
    users = tmp_path / "users.toml"
    code, out, err = run_workerctl("users", "add", "carol", "--users", str(users))
    assert code == 0, err
    assert "carol" in users.read_text()
    assert out.splitlines()[-1] == "['asyncio', 'fire']"


def test_a_command_line_fire_refuses_is_a_usage_error_in_one_line_of_ours(tmp_path):
    users = tmp_path / "users.toml"
    # The table reads -inf as a number, a name to add; Fire takes it for a flag and finds no name.
    code, out, err = run_workerctl("users", "add", "-inf", "--users", str(users))
    assert code == 64
    assert err == "workerctl: the words given do not fit users add (see 'workerctl users add --help')\n"
    assert not users.exists()
