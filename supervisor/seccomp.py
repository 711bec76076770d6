"""The seccomp filter every job runs under: which system calls a job may not make, compiled once per supervisor
with libseccomp into a sealed memory file that the sandbox helper installs just before the job's program.

The filter follows Docker's default profile (moby/profiles seccomp/default_linux.go) where it matters for an
unprivileged job: it refuses what widens the kernel surface a job can reach, above all creating namespaces
(a user namespace gives its maker every capability inside it, the usual first step of a kernel exploit), the
mount family, the keyring, BPF, perf events, userfaultfd, io_uring, kexec and modules, and the calls that need
a capability no job has. Docker allows a fixed list and refuses the rest; this refuses a fixed list and allows
the rest, so a program that uses a call newer than the list runs (docs/security.md says why we chose so).
Refused calls fail with EPERM, as in Docker; clone3 fails with ENOSYS, so that the C library falls back to
clone, whose flags the filter can see, and io_setup too, so that programs fall back from Linux AIO (whose
contexts the whole host shares) as they do on a kernel without it. System calls of another architecture (32-bit calls on x86-64) kill the
calling process: libseccomp's default for a foreign architecture.

libseccomp is the C library every container runtime builds its filters with; it is loaded with ctypes from its
shared library (Debian's libseccomp2), so building workerctl needs no development package.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket

LIBRARY = "libseccomp.so.2"

# Refused outright (EPERM), grouped as Docker's profile reasons about them.
DENIED = (
    # namespaces and the file system tree: a job gets neither new namespaces nor mounts
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # the kernel keyring: keys would outlive the job in its user's keyring
    "keyctl", "add_key", "request_key",
    # programs and probes run by the kernel
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the kernel itself, modules and the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
    "get_kernel_syms", "query_module", "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl",
    "quotactl_fd", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vhangup",
    "iopl", "ioperm", "vm86", "vm86old",
    # the clock, NUMA placement and other processes' insides, each needing a capability a job lacks
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime", "mbind", "set_mempolicy",
    "move_pages", "migrate_pages", "kcmp", "open_by_handle_at", "fanotify_init",
)

# clone with any of these flags makes a namespace (CLONE_NEWTIME is clone3's and unshare's only).
_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
# Socket families Docker refuses: the kernel's crypto API (AF_ALG) and host/guest sockets (AF_VSOCK).
_DENIED_SOCKET_FAMILIES = (socket.AF_ALG, getattr(socket, "AF_VSOCK", 40))

_ALLOW = 0x7FFF0000
_COMPARE_EQUAL = 4
_COMPARE_MASKED_EQUAL = 7


def _refuse_with(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgumentCompare(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class SeccompUnavailable(Exception):
    """The filter cannot be built here; the message says why in one sentence."""


def job_filter() -> int:
    """The job filter as the kernel takes it (an array of BPF instructions) in a sealed memory file: its
    descriptor, for the helper to read. SeccompUnavailable if libseccomp is missing or refuses."""
    try:
        library = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError:
        raise SeccompUnavailable(f"{LIBRARY} (libseccomp, Debian's libseccomp2) is not installed") from None
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(_ArgumentCompare)]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    context = library.seccomp_init(_ALLOW)
    if not context:
        raise SeccompUnavailable("libseccomp cannot make a filter")

    def refuse(name: str, code: int = errno.EPERM, *compares: _ArgumentCompare) -> None:
        number = library.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a system call of this architecture
        array = (_ArgumentCompare * len(compares))(*compares) if compares else None
        result = library.seccomp_rule_add_array(context, _refuse_with(code), number, len(compares), array)
        if result < 0:
            raise SeccompUnavailable(f"libseccomp refuses a rule for {name}: {os.strerror(-result)}")

    try:
        for name in DENIED:
            refuse(name)
        for flag in _NAMESPACE_FLAGS:
            refuse("clone", errno.EPERM, _ArgumentCompare(0, _COMPARE_MASKED_EQUAL, flag, flag))
        refuse("clone3", errno.ENOSYS)
        # Linux AIO contexts come from one table for the whole host (fs.aio-max-nr), which one job could take;
        # ENOSYS, as on a kernel without AIO, so that programs fall back to ordinary reads and writes.
        refuse("io_setup", errno.ENOSYS)
        for family in _DENIED_SOCKET_FAMILIES:
            refuse("socket", errno.EAFNOSUPPORT, _ArgumentCompare(0, _COMPARE_EQUAL, family, 0))
        fd = os.memfd_create("workerctl-seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        result = library.seccomp_export_bpf(context, fd)
        if result < 0:
            os.close(fd)
            raise SeccompUnavailable(f"libseccomp cannot export the filter: {os.strerror(-result)}")
        seal(fd)
        return fd
    finally:
        library.seccomp_release(context)


def seal(fd: int) -> None:
    """Make the memory file `fd` unchangeable, by anyone, for good."""
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
