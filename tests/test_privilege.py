"""Hostile tests of the privileged path, tried as an attacker with an ordinary token would: nothing a request
carries, and nothing a job writes, may run with root's privileges, widen the kernel surface a job reaches, or
show a job what belongs to the server or to other users. Each attack is also shown to reach the job itself
(the planted library loads, the setuid bit is set), so that a test passes because the defence held, not because
the attack never happened."""

from __future__ import annotations

import base64
import os
import platform
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from facilities import needs
from planted import build_planted_library, c_compiler, marks_directory, ran_as_root
from support import Server, cgroups_of, require_namespaces, start_server
from workerctl.supervisor.accounts import ID_REGISTRY
from workerctl.supervisor.sandbox import HELPER

needs("root", None if os.geteuid() == 0 else "the privileged path exists only when serve runs as root")
pytestmark = pytest.mark.slow  # a server with the sandbox and one without, hostile programs compiled


@pytest.fixture(scope="module")
def marks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return marks_directory(tmp_path_factory.mktemp("marks"))


@pytest.fixture(scope="module")
def planted_library(marks: Path) -> bytes:
    return build_planted_library(marks).read_bytes()


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory, tls, users) -> Server:
    require_namespaces()
    running = start_server(tmp_path_factory.mktemp("sandboxed"), tls, users, "--sandbox", "on")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def unsandboxed(tmp_path_factory, tls, users) -> Server:
    require_namespaces()  # root with the helper: its user switch and seccomp, without namespaces
    running = start_server(tmp_path_factory.mktemp("unsandboxed"), tls, users, "--sandbox", "off")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(params=["sandboxed", "unsandboxed"])
def any_server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(request.param)


def home_in_job(server: Server, user: str = "alice") -> str:
    """Where `user`'s jobs find their home."""
    sandbox_on = server.process.args[server.process.args.index("--sandbox") + 1] == "on"
    return f"/home/{user}" if sandbox_on else str(server.data_dir / "homes" / user)


def run(server: Server, command: str, user: str = "alice", **fields) -> dict:
    return server.wait_final(server.start(command, user=user, **fields), user)


def plant(server: Server, data: bytes, name: str) -> None:
    """Have one of alice's jobs write `data` to `name` in her home, as an attacker would."""
    encoded = base64.b64encode(data).decode()
    status = run(server, f'echo {encoded} | base64 -d > "$HOME/{name}" && echo planted')
    assert status["output"] == "planted\n", status


# --- the job's environment reaches only the job ---------------------------------------------------------------

@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_AUDIT"])
@pytest.mark.parametrize("where", ["host path", "sandbox path", "relative"])
def test_a_loader_variable_never_loads_a_planted_library_as_root(any_server, marks, planted_library, variable,
                                                                 where):
    plant(any_server, planted_library, "x.so")
    path = {"host path": str(any_server.data_dir / "homes" / "alice" / "x.so"),
            "sandbox path": "/home/alice/x.so", "relative": "./x.so"}[where]
    status = run(any_server, "echo ran", env={variable: path})
    assert ran_as_root(marks) == [], status
    if path.startswith(("./", home_in_job(any_server))):
        # The job's own shell took the library: the attack reached as far as it may, and no further.
        assert "planted library ran as uid " in status["output"] and "ran as uid 0\n" not in status["output"]
    assert status["output"].endswith("ran\n"), status


@pytest.mark.parametrize("variables", [
    {"LD_DEBUG": "statistics", "LD_DEBUG_OUTPUT": "{marks}/debug"},
    {"LD_LIBRARY_PATH": "{home}"}, {"GCONV_PATH": "{home}"}, {"LOCPATH": "{home}"},
    {"GLIBC_TUNABLES": "glibc.malloc.check=3"}, {"MALLOC_CHECK_": "3"}, {"TZ": "{home}/x.so"},
], ids=lambda variables: "+".join(variables))
def test_other_loader_and_libc_variables_touch_nothing_as_root(any_server, marks, planted_library, variables):
    plant(any_server, planted_library, "libc.so.6")
    home = any_server.data_dir / "homes" / "alice"
    env = {name: value.format(marks=marks, home=home) for name, value in variables.items()}
    status = run(any_server, "echo ran", env=env)
    assert ran_as_root(marks) == [], status


# --- the kernel surface a job reaches ---------------------------------------------------------------------------

# Each attempt prints NAME=errno (0 where the call succeeded); x86-64 system call numbers.
_SYSTEM_CALLS = r"""
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, number, *arguments):
    result = libc.syscall(number, *[ctypes.c_long(argument) for argument in arguments])
    if result == 0 and name.startswith("clone"):
        os._exit(0)  # the child of a clone that worked
    print(f"{name}={0 if result >= 0 else ctypes.get_errno()}")
attempt("unshare_user", 272, 0x10000000)
attempt("unshare_mount", 272, 0x00020000)
attempt("clone_user", 56, 0x10000000 | 17, 0, 0, 0, 0)
attempt("clone3", 435, 0, 0)
attempt("setns", 308, 0, 0)
attempt("mount", 165, 0, 0, 0, 0, 0)
attempt("add_key", 248, 0, 0, 0, 0, 0)
attempt("keyctl", 250, 1, 0)
attempt("bpf", 321, 0, 0, 0)
attempt("perf_event_open", 298, 0, 0, -1, -1, 0)
attempt("userfaultfd", 323, 0)
attempt("io_uring_setup", 425, 1, 0)
attempt("kexec_load", 246, 0, 0, 0, 0)
attempt("init_module", 175, 0, 0, 0)
attempt("open_tree", 428, -100, 0, 0)
attempt("io_setup", 206, 128, 0)
try:
    socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET)
    print("socket_alg=0")
except OSError as error:
    print(f"socket_alg={error.errno}")
"""


def _errors(output: str) -> dict[str, int]:
    return {name: int(code) for name, code in (line.split("=") for line in output.splitlines() if "=" in line)}


def test_a_job_cannot_make_namespaces_mounts_keys_bpf_or_io_uring(any_server):
    if platform.machine() != "x86_64":
        pytest.skip("the system call numbers here are x86-64's")
    status = run(any_server, f"grep Seccomp: /proc/self/status; python3 -c '{_SYSTEM_CALLS}'; unshare -Ur id")
    errors = _errors(status["output"].replace(":\t", "="))
    assert errors.pop("Seccomp") == 2, status
    assert errors.pop("clone3") == 38, status  # ENOSYS: the C library falls back to clone, which the filter sees
    assert errors.pop("io_setup") == 38, status  # ENOSYS: programs fall back from AIO, whose table is the host's
    assert errors.pop("socket_alg") == 97, status  # EAFNOSUPPORT
    assert errors == dict.fromkeys(errors, 1) and len(errors) == 14, status  # EPERM, every one
    assert "uid=0" not in status["output"] and "Operation not permitted" in status["output"]


def test_without_the_filter_the_same_job_makes_a_user_namespace(server_factory):
    """The control: with --seccomp off the kernel here lets a job become root of a user namespace of its own,
    which is what the filter takes away."""
    require_namespaces()
    server = server_factory("--sandbox", "on", "--seccomp", "off")
    status = run(server, "grep Seccomp: /proc/self/status; unshare -Ur id -u")
    if "Operation not permitted" in status["output"]:
        pytest.skip("this kernel refuses user namespaces to unprivileged users anyway")
    assert status["output"] == "Seccomp:\t0\n0\n", status


def test_a_job_can_neither_take_every_pty_of_the_host_nor_dump_core(sandboxed):
    status = run(sandboxed, "ulimit -c; ulimit -Hc; python3 -c 'import os\nopened = 0\ntry:\n    while opened < 1000:"
                            "\n        os.openpty()\n        opened += 1\nexcept OSError as error:\n"
                            "    print(opened, error.errno)'")
    assert status["output"] == "0\n0\n64 28\n", status  # ENOSPC after the 64 of its own devpts


_EUID_SOURCE = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid %d\n", (int)geteuid()); return 0; }
"""


def test_a_setuid_root_program_gives_a_job_nothing(any_server, tmp_path):
    compiler = c_compiler()
    run(any_server, "true")  # alice's home is ready
    source = tmp_path / "euid.c"
    source.write_text(_EUID_SOURCE)
    program = any_server.data_dir / "homes" / "alice" / "euid"
    subprocess.run([compiler, "-o", str(program), str(source)], check=True)
    os.chown(program, 0, 0)
    program.chmod(0o4755)
    assert program.stat().st_mode & stat.S_ISUID and program.stat().st_uid == 0
    status = run(any_server, f'{home_in_job(any_server)}/euid')
    assert status["output"].startswith("euid ") and status["output"] != "euid 0\n", status


# --- what a job sees ---------------------------------------------------------------------------------------------

def test_a_job_sees_nothing_of_the_server_nor_of_other_users(sandboxed, tls):
    run(sandboxed, "echo bob was here > $HOME/file", user="bob")  # bob's home is mounted on the host now
    output = run(sandboxed, "cat /proc/1/cmdline; echo; cat /proc/self/mountinfo /proc/self/cgroup; ls -A /sys; "
                            "cat /proc/keys /proc/key-users /proc/partitions /proc/diskstats; ls -A /proc/fs; "
                            "ls /home")["output"]
    for secret in (str(sandboxed.data_dir), str(tls.key), str(sandboxed.users.file), "bob", "homes", "cgroup2",
                   "user-alice"):
        assert secret not in output, (secret, output)
    assert output.count(" - ext4 /dev/loop") <= 1, output  # alice's own home, where homes are file systems
    assert "loop" not in output.replace(" - ext4 /dev/loop", "") and "major" not in output, output
    assert all(line.rsplit(":", 1)[1] == "/" for line in output.splitlines() if line[:1].isdigit() and
               line.count(":") == 2), output  # the job's cgroup is its root
    assert output.splitlines()[-1] == "alice"


def test_the_audit_log_is_made_readable_by_root_alone(server_factory, tmp_path):
    audit = tmp_path / "audit.log"
    server = server_factory("--audit-log", str(audit))
    run(server, "true")
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600 and audit.stat().st_size > 0


# --- links in the home ---------------------------------------------------------------------------------------------

def test_links_in_a_home_lead_root_nowhere(server_factory, tmp_path):
    """A job plants links in its home to a file of root's; the next server on the data directory makes the home
    ready again (owner, mode) and must touch only the home itself."""
    require_namespaces()
    canary = tmp_path / "canary"
    canary.write_text("root's\n")
    canary.chmod(0o600)
    first = server_factory("--sandbox", "off")
    status = run(first, f"ln -s {canary} $HOME/symlink; ln {canary} $HOME/hardlink 2>/dev/null; "
                        f"ln -s {canary} $TMPDIR/escape; ls $HOME")
    assert "symlink" in status["output"], status
    assert first.stop() == 0
    second = server_factory("--sandbox", "off", data_dir=first.data_dir)
    run(second, "true")
    assert (canary.stat().st_uid, stat.S_IMODE(canary.stat().st_mode)) == (0, 0o600)
    assert canary.read_text() == "root's\n"


# --- the helper's own checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["-u", "-g"])
@pytest.mark.parametrize("value", ["0", "4294967295", "4294967296", "18446744073709551615", "-1", "+5", "1x", ""])
def test_the_helper_refuses_ids_at_the_edges(option, value):
    require_namespaces()
    other = {"-u": "-g", "-g": "-u"}[option]
    done = subprocess.run([str(HELPER), option, value, other, "65534", "--", "/usr/bin/id"], capture_output=True,
                          text=True, env={}, cwd="/")
    assert done.returncode == 125 and "could not be set up" in done.stderr and done.stdout == "", done


@pytest.mark.parametrize("arguments", [["--", "/usr/bin/id"], ["-u", "65534", "--", "/usr/bin/id"],
                                       ["-u", "65534", "-g", "65534", "--", "id"]],
                         ids=["no user", "no group", "relative program"])
def test_the_helper_refuses_to_run_a_job_as_root_or_by_path_search(arguments):
    require_namespaces()
    done = subprocess.run([str(HELPER), *arguments], capture_output=True, text=True, env={}, cwd="/")
    assert done.returncode == 125 and done.stdout == "", done


# --- failing closed -----------------------------------------------------------------------------------------------

def _package_without_helper(directory: Path) -> Path:
    """A copy of the workerctl package, laid out as an install lays it out, without the sandbox helper."""
    root = Path(__file__).resolve().parents[1]
    package = directory / "workerctl"
    shutil.copytree(root / "client", package, ignore=shutil.ignore_patterns("__pycache__"))
    for layer in ("web", "supervisor", "store", "server"):
        shutil.copytree(root / layer, package / layer,
                        ignore=shutil.ignore_patterns("__pycache__", "workerctl-sandbox", "*.c"))
    return directory


@pytest.mark.slow
def test_as_root_serve_refuses_to_start_without_the_helper_and_leaves_nothing(tmp_path, tls, users):
    require_namespaces()
    installed = _package_without_helper(tmp_path / "install")
    for flags in ((), ("--sandbox", "off")):
        server = start_server(tmp_path, tls, users, *flags, ready=False,
                              env={"PYTHONPATH": str(installed)})
        assert server.process.wait(60) == 78, server.log()
        assert "the sandbox helper" in server.log() and "was not built" in server.log()
        assert "Traceback" not in server.log()
    assert cgroups_of(server.data_dir) == []
    holders = [entry.read_text() for entry in ID_REGISTRY.glob("*")] if ID_REGISTRY.exists() else []
    assert not any(str(server.data_dir.resolve()) in holder for holder in holders)


def test_jobs_may_not_run_as_root(tmp_path, tls, users):
    server = start_server(tmp_path, tls, users, "--job-user", "root", ready=False)
    assert server.process.wait(60) == 78
    assert "jobs must not run as 'root'" in server.log() and "Traceback" not in server.log()
