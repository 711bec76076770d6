"""The network namespaces kept for users' next jobs: bounded per user and in all, and never another user's.
(No namespace is made here: none is asked for ahead, and the descriptors kept are stand-ins.)"""

from __future__ import annotations

import os

from workerctl.supervisor.networks import NetworkNamespaces


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_kept_namespaces_are_bounded_per_user_and_in_all_and_never_another_users() -> None:
    spaces = NetworkNamespaces(ready=0, kept_per_user=2, kept=3)
    stand_ins = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
    try:
        for fd in stand_ins[:3]:
            spaces.give_back("alice", fd)  # the third is past alice's two: closed
        spaces.give_back("bob", stand_ins[3])
        spaces.give_back("bob", stand_ins[4])  # past three in all: closed
        assert [_is_open(fd) for fd in stand_ins] == [True, True, False, True, False]
        assert spaces.take("carol") is None
        assert spaces.take("bob") == stand_ins[3]
        assert {spaces.take("alice"), spaces.take("alice")} == set(stand_ins[:2])
        assert spaces.take("alice") is None
        spaces.give_back("bob", stand_ins[0])  # room again, as alice's were taken
        assert spaces.take("bob") == stand_ins[0]
    finally:
        spaces.close()
        for fd in stand_ins:
            if _is_open(fd):
                os.close(fd)


def test_closing_closes_what_is_kept() -> None:
    spaces = NetworkNamespaces(ready=0, kept_per_user=2, kept=2)
    fd = os.open("/dev/null", os.O_RDONLY)
    spaces.give_back("alice", fd)
    spaces.close()
    assert not _is_open(fd)
