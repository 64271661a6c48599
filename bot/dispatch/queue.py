"""Queued jobs waiting for submission: one queue per model, round-robin across users.

One member's batch of jobs does not hold back everyone else: each turn serves the next user in
rotation, so a job's position depends on how many jobs each other user has ahead of it.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class FairQueue:
    def __init__(self) -> None:
        # model → user → that user's queued job ids, users in rotation order
        self._models: dict[str, OrderedDict[int, deque[int]]] = {}
        self._where: dict[int, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._where

    def push(self, model: str, user_id: int, job_id: int, *, front: bool = False) -> None:
        if job_id in self._where:
            return
        users = self._models.setdefault(model, OrderedDict())
        jobs = users.get(user_id)
        if jobs is None:
            jobs = users[user_id] = deque()
        if front:  # back where it was popped from: first in line, its user first in rotation
            users.move_to_end(user_id, last=False)
            jobs.appendleft(job_id)
        else:
            jobs.append(job_id)
        self._where[job_id] = (model, user_id)

    def models(self) -> list[str]:
        return [model for model, users in self._models.items() if users]

    def pop(self, model: str) -> int | None:
        users = self._models.get(model)
        if not users:
            return None
        user_id, jobs = next(iter(users.items()))
        job_id = jobs.popleft()
        if jobs:
            users.move_to_end(user_id)
        else:
            del users[user_id]
        del self._where[job_id]
        return job_id

    def remove(self, job_id: int) -> bool:
        where = self._where.pop(job_id, None)
        if where is None:
            return False
        model, user_id = where
        users = self._models[model]
        users[user_id].remove(job_id)
        if not users[user_id]:
            del users[user_id]
        return True

    def position(self, job_id: int) -> int | None:
        """1 for the next job of its model to be submitted, 2 for the one after, …"""
        where = self._where.get(job_id)
        if where is None:
            return None
        model, user_id = where
        users = self._models[model]
        k = users[user_id].index(job_id)
        ahead = k
        before_user = True
        for other, jobs in users.items():
            if other == user_id:
                before_user = False
                continue
            # Users earlier in the rotation are served k+1 times before this job, later ones k.
            ahead += min(len(jobs), k + 1 if before_user else k)
        return ahead + 1

    def queued(self) -> list[int]:
        return list(self._where)
