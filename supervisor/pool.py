"""The job pool: which waiting job runs next.

At most `max_running` jobs run at once, and at most `max_per_user` of any one user's. A job past either limit
waits in `created`. When a slot frees, it goes to the waiting user with the fewest jobs running (of those
equal, the one served longest ago), and each user's own jobs go first come, first served: one user's flood
cannot starve another user.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class JobPool:
    def __init__(self, max_running: int, max_per_user: int) -> None:
        self.max_running = max_running
        self.max_per_user = max_per_user
        self._waiting: OrderedDict[str, deque[str]] = OrderedDict()  # user -> job IDs; order is the turn order
        self._running: dict[str, str] = {}  # job ID -> user
        self._running_per_user: dict[str, int] = {}

    def add(self, job_id: str, user: str) -> None:
        self._waiting.setdefault(user, deque()).append(job_id)

    def add_running(self, job_id: str, user: str) -> None:
        """Count a job that runs already (taken back from an earlier run of the server) in its user's slots."""
        self._running[job_id] = user
        self._running_per_user[user] = self._running_per_user.get(user, 0) + 1

    def withdraw(self, job_id: str, user: str) -> bool:
        """Take a waiting job out of the queue; False if it is not waiting."""
        queue = self._waiting.get(user)
        if queue is None or job_id not in queue:
            return False
        queue.remove(job_id)
        if not queue:
            del self._waiting[user]
        return True

    def waiting_for(self, user: str) -> int:
        return len(self._waiting.get(user, ()))

    def release(self, job_id: str) -> None:
        """A job has ended: free its slot, if it had one."""
        user = self._running.pop(job_id, None)
        if user is not None:
            self._running_per_user[user] -= 1
            if not self._running_per_user[user]:
                del self._running_per_user[user]

    def take_runnable(self) -> list[str]:
        """Move every job that may start now from waiting to running, in the order they should start."""
        started = []
        while len(self._running) < self.max_running:
            eligible = [user for user in self._waiting if self._running_per_user.get(user, 0) < self.max_per_user]
            if not eligible:
                break
            user = min(eligible, key=lambda user: self._running_per_user.get(user, 0))  # ties: turn order
            queue = self._waiting.pop(user)
            job_id = queue.popleft()
            if queue:
                self._waiting[user] = queue  # back of the line: the other users go first
            self.add_running(job_id, user)
            started.append(job_id)
        return started
