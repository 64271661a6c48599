"""Jobs in the database: create, read, move between states, record results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from bot.dashscope.results import TaskResult
from bot.jobs.model import (
    STATE_TIME_COLUMN,
    TRANSITIONS,
    IllegalTransition,
    Job,
    JobState,
    NewJob,
    ResultImage,
    stored_kind,
)
from bot.storage.db import Conn, Cursor, Database

# Columns a transition may set besides the state and its timestamp.
_UPDATABLE = {
    "task_id",
    "submit_request_id",
    "result_request_id",
    "actual_prompt",
    "image_count",
    "result_size",
    "video_seconds",
    "error_code",
    "error_message",
    "error_problems",
    "retryable",
    "status_message_id",
    "thread_id",
    "submit_attempts",
    "delivery_attempts",
    "next_delivery_at",
    "notified_at",
}


# Ended jobs whose final status was never shown, through the small partial index of exactly
# those (on SQLite the unary + keeps the planner from preferring the index of every job by
# state or by id; PostgreSQL needs no hint, and has no unary + for text).
UNNOTIFIED_SQL = (
    "SELECT * FROM jobs WHERE notified_at IS NULL AND finished_at >= ?"
    " AND {plus}state IN {states} ORDER BY {plus}id"
)


_BY_ID = "SELECT * FROM jobs WHERE id = ?"
# The states a job may move to each state from.
_SOURCES = {
    target: [source.value for source, targets in TRANSITIONS.items() if target in targets]
    for target in JobState
}
_DELETION_DONE = "UPDATE jobs SET deletion_done_at = ? WHERE id = ? AND deleted_at IS NOT NULL"
_ADD_REPOST = (
    "INSERT INTO reposts (message_id, job_id, channel_id) VALUES (?, ?, ?)"
    " ON CONFLICT (message_id) DO NOTHING"
)


class JobStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def insert(self, conn: Conn, new: NewJob) -> Job:
        """Insert a queued job (inside a `Database.write`)."""
        now = self.clock()
        row = conn.execute(
            "INSERT INTO jobs (state, kind, tool, model, mode, params, n, user_id, guild_id,"
            " channel_id, thread_id, locale, parent_job_id, created_at, updated_at)"
            " VALUES ('queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (*self.values(new), now, now),
        ).fetchone()
        job_id = int(row[0])
        if new.request.images:
            conn.executemany(
                "INSERT INTO job_inputs (job_id, position, data_uri) VALUES (?, ?, ?)",
                [(job_id, i, uri) for i, uri in enumerate(new.request.images)],
            )
        return Job.queued(job_id, new, now)

    @staticmethod
    def values(new: NewJob) -> tuple[Any, ...]:
        """A new job's row: kind, tool, model, mode, params, n, user_id, guild_id, channel_id,
        thread_id, locale, parent_job_id (the times are the caller's)."""
        return (
            *stored_kind(new.kind),
            new.request.model,
            "sync" if new.sync else "async",
            new.params.to_json(),
            new.request.n,
            new.user_id,
            new.guild_id,
            new.channel_id,
            new.thread_id,
            new.locale,
            new.parent_job_id,
        )

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetchone(_BY_ID, (job_id,))
        return Job.from_row(row) if row else None

    async def get_many(self, job_ids: list[int]) -> list[Job]:
        """The jobs of `job_ids` that exist, in that order: one query."""
        if not job_ids:
            return []
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(job_ids))})",  # noqa: S608
            job_ids,
        )
        found = {job.id: job for job in map(Job.from_row, rows)}
        return [found[job_id] for job_id in job_ids if job_id in found]

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id",  # noqa: S608
            wanted,
        )
        return [Job.from_row(row) for row in rows]

    async def unnotified_failures(self, since: float) -> list[Job]:
        """Failed jobs whose user was never told (a crash came between)."""
        return await self._unnotified("('failed')", since)

    async def unnotified_endings(self, since: float) -> list[Job]:
        """Done or cancelled jobs whose final status was never shown (a crash came between)."""
        return await self._unnotified("('done', 'cancelled')", since)

    async def _unnotified(self, states: str, since: float) -> list[Job]:
        plus = "+" if self.db.dialect == "sqlite" else ""
        sql = UNNOTIFIED_SQL.format(states=states, plus=plus)
        rows = await self.db.fetchall(sql, (since,))
        return [Job.from_row(row) for row in rows]

    async def job_for_message(self, message_id: int) -> Job | None:
        """The job whose result images were posted in this message."""
        row = await self.db.fetchone(
            "SELECT j.* FROM jobs j JOIN results r ON r.job_id = j.id"
            " WHERE r.delivered_message_id = ? LIMIT 1",
            (message_id,),
        )
        return Job.from_row(row) if row else None

    async def recent_durations(self, limit: int = 200) -> list[tuple[str, int, str, float]]:
        """(model, n, timing kind, seconds from submission to result) of recent asynchronous
        jobs (`Job.timing_kind`: a video's seconds and resolution count)."""
        rows = await self.db.fetchall(
            "SELECT * FROM jobs"
            " WHERE mode = 'async' AND submitted_at IS NOT NULL AND delivering_at IS NOT NULL"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        jobs = [Job.from_row(row) for row in reversed(rows)]
        return [
            (j.model, j.n, j.timing_kind, (j.delivering_at or 0) - (j.submitted_at or 0))
            for j in jobs
        ]

    async def recent_for_user(self, user_id: int, limit: int = 10) -> list[Job]:
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)
        )
        return [Job.from_row(row) for row in rows]

    async def inputs(self, job_id: int) -> tuple[str, ...]:
        rows = await self.db.fetchall(
            "SELECT data_uri FROM job_inputs WHERE job_id = ? ORDER BY position", (job_id,)
        )
        return tuple(row["data_uri"] for row in rows)

    async def results(self, job_id: int) -> list[ResultImage]:
        rows = await self.db.fetchall(
            "SELECT * FROM results WHERE job_id = ? ORDER BY position", (job_id,)
        )
        return [
            ResultImage(
                r["position"],
                r["url"],
                r["expires_at"],
                r["failure_code"],
                r["failure_message"],
                r["delivered_message_id"],
            )
            for r in rows
        ]

    def transition(self, conn: Conn, job_id: int, target: JobState, **fields: Any) -> Job:
        """Move a job to `target` (inside a `Database.write`); raise if not allowed. One
        statement when allowed: the row is moved only from a state that may go to `target`,
        and comes back as written."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} in a transition")
        now = self.clock()
        columns = {"state": target.value, "updated_at": now, **fields}
        if target in STATE_TIME_COLUMN:
            columns[STATE_TIME_COLUMN[target]] = now
        sources = _SOURCES[target]
        row = None
        if sources:
            assignments = ", ".join(f"{name} = ?" for name in columns)
            row = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ?"  # noqa: S608
                f" AND state IN ({', '.join('?' * len(sources))}) RETURNING *",
                (*columns.values(), job_id, *sources),
            ).fetchone()
        if row is None:  # say why: no such job, or its state may not go there
            found = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            raise IllegalTransition(job_id, JobState(found[0]) if found else None, target)
        return Job.from_row(row)

    def update(self, conn: Conn, job_id: int, **fields: Any) -> None:
        """Change bookkeeping columns without changing the state (inside a `Database.write`)."""
        self._update(conn, job_id, fields, "")

    def updated(self, conn: Conn, job_id: int, **fields: Any) -> Job | None:
        """`update`, and the job as written (None: no such job), in one statement."""
        row = self._update(conn, job_id, fields, " RETURNING *").fetchone()
        return Job.from_row(row) if row else None

    def _update(self, conn: Conn, job_id: int, fields: dict[str, Any], returning: str) -> Cursor:
        unknown = set(fields) - _UPDATABLE
        if unknown or not fields:
            raise ValueError(f"cannot set {sorted(unknown) or 'nothing'}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        return conn.execute(
            f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?{returning}",  # noqa: S608
            (*fields.values(), self.clock(), job_id),
        )

    def save_results(self, conn: Conn, job_id: int, result: TaskResult, expires_at: float) -> None:
        rows: list[tuple[int, int, str | None, float | None, str | None, str | None]] = [
            (job_id, i, image.url, expires_at, None, None) for i, image in enumerate(result.images)
        ]
        offset = len(rows)
        rows += [
            (job_id, offset + i, None, None, failure.code, failure.message)
            for i, failure in enumerate(result.failures)
        ]
        conn.executemany(
            "INSERT INTO results (job_id, position, url, expires_at, failure_code, failure_message)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, position) DO NOTHING",
            rows,
        )

    def mark_delivered(
        self, conn: Conn, job_id: int, position: int, message_id: int | None
    ) -> None:
        conn.execute(
            "UPDATE results SET delivered_message_id = ? WHERE job_id = ? AND position = ?",
            (message_id if message_id is not None else 0, job_id, position),
        )

    def prune_inputs(self, conn: Conn, ended_before: float) -> None:
        """Forget the input images of jobs that ended before `ended_before`."""
        conn.execute(
            "DELETE FROM job_inputs WHERE job_id IN"
            " (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?)",
            (ended_before,),
        )

    # --- deletion: a result deleted by its owner or a moderator is gone for good ---------------

    async def delete_for_good(self, job_id: int, by: int) -> Job | None:
        """Record the deletion (the first one's time and author stand) and forget what could
        post the images again: the result URLs and the input images. Done on Discord later
        (`deletion_done`); until then it counts as pending, also across a restart."""
        return await self.db.write(self._delete, job_id, by)

    def _delete(self, conn: Conn, job_id: int, by: int) -> Job | None:
        now = self.clock()
        conn.execute(
            "UPDATE jobs SET deleted_at = COALESCE(deleted_at, ?),"
            " deleted_by = COALESCE(deleted_by, ?), deletion_done_at = NULL, updated_at = ?"
            " WHERE id = ?",
            (now, by, now, job_id),
        )
        conn.execute("UPDATE results SET url = NULL, expires_at = NULL WHERE job_id = ?", (job_id,))
        conn.execute("DELETE FROM job_inputs WHERE job_id = ?", (job_id,))
        row = conn.execute(_BY_ID, (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    async def deletion_done(self, job_id: int) -> None:
        await self.db.write(self._run, _DELETION_DONE, (self.clock(), job_id))

    async def deletions_pending(self) -> list[Job]:
        """Deleted jobs not yet carried out on Discord (a restart came in between)."""
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE deleted_at IS NOT NULL AND deletion_done_at IS NULL"
            " ORDER BY id"
        )
        return [Job.from_row(row) for row in rows]

    async def add_repost(self, job_id: int, channel_id: int, message_id: int) -> None:
        """A message besides the delivery with the job's images: a /show repost, or one that
        Delete was clicked on (say a repost from before reposts were recorded)."""
        await self.db.write(self._run, _ADD_REPOST, (message_id, job_id, channel_id))

    async def reposts(self, job_id: int) -> list[tuple[int, int]]:
        """(channel id, message id) of every message recorded by `add_repost`."""
        rows = await self.db.fetchall(
            "SELECT channel_id, message_id FROM reposts WHERE job_id = ? ORDER BY message_id",
            (job_id,),
        )
        return [(row["channel_id"], row["message_id"]) for row in rows]

    @staticmethod
    def _run(conn: Conn, sql: str, params: tuple[Any, ...]) -> None:
        conn.execute(sql, params)

    async def count_by_state(self) -> dict[JobState, int]:
        rows = await self.db.fetchall("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        counts = {state: 0 for state in JobState}
        for row in rows:
            counts[JobState(row["state"])] = row["n"]
        return counts
