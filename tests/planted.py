"""A planted library for hostile tests: its constructor records, in a directory on the host, the user it ran as,
and says so on stderr. Loaded by any process running as root, it leaves "ran-as-0" there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from facilities import needs

_SOURCE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ran-as-%d", MARKS, (int)getuid());
    int fd = open(path, O_WRONLY | O_CREAT, 0666);
    if (fd >= 0) close(fd);
    dprintf(2, "planted library ran as uid %d\n", (int)getuid());
}
unsigned int la_version(unsigned int version) { return version; }  /* so that LD_AUDIT takes it too */
"""


def marks_directory(directory: Path) -> Path:
    """`directory`, made (if need be) writable by anyone and reachable by jobs run without a sandbox (which leave
    marks)."""
    directory.mkdir(exist_ok=True)
    directory.chmod(0o1777)
    for ancestor in directory.parents:
        if ancestor == Path("/tmp"):
            break
        ancestor.chmod(ancestor.stat().st_mode | 0o111)
    return directory


def c_compiler() -> str:
    """The C compiler (`$CC`, else `cc`), for the "compiler" facility (facilities.py)."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    needs("compiler", None if compiler else "no C compiler (Debian's build-essential; .ci/run installs it)")
    assert compiler is not None
    return compiler


def build_planted_library(marks: Path) -> Path:
    """The library, compiled next to `marks`."""
    compiler = c_compiler()
    source = marks.parent / "planted.c"
    source.write_text(_SOURCE)
    library = marks.parent / "planted.so"
    subprocess.run([compiler, "-shared", "-fPIC", f'-DMARKS="{marks}"', "-o", str(library), str(source)], check=True)
    return library


def ran_as_root(marks: Path) -> list[str]:
    """The marks that a process running as root left."""
    return [path.name for path in marks.iterdir() if path.name == "ran-as-0" or path.stat().st_uid == 0]
