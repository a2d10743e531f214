"""The floor of issue 10: a plain group-commit ingest server, to measure Traction against.

    .venv/bin/python bench/floor_server.py --port 8400 --data /tmp/floor

Starlette, `orjson` parse, one writer thread appending Arrow batches to a DuckDB file and
answering after `COMMIT` (a 200 means committed), grouping what arrived meanwhile. No
validation, identity, dedupe or reactors: what the hardware gives for the same durability.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

COLUMNS = ("message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "properties")
Pending = tuple[list[dict[str, Any]], asyncio.AbstractEventLoop, asyncio.Future[None]]


class GroupWriter:
    """One thread owns the file: it takes every batch waiting, appends them as one Arrow
    table in one transaction, then answers them all."""

    def __init__(self, path: Path, max_group: int = 20_000) -> None:
        self.con = duckdb.connect(str(path))
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS events (message_id VARCHAR, type VARCHAR, event VARCHAR, "
            "user_id VARCHAR, anonymous_id VARCHAR, timestamp VARCHAR, properties JSON)"
        )
        self.max_group = max_group
        self.queue: queue.Queue[Pending] = queue.Queue()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while True:
            group = [self.queue.get()]
            n = len(group[0][0])
            while n < self.max_group:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                group.append(nxt)
                n += len(nxt[0])
            rows = [m for batch, _, _ in group for m in batch]
            table = pa.table({
                "message_id": [m.get("messageId") for m in rows], "type": [m.get("type") for m in rows],
                "event": [m.get("event") for m in rows], "user_id": [m.get("userId") for m in rows],
                "anonymous_id": [m.get("anonymousId") for m in rows],
                "timestamp": [m.get("timestamp") for m in rows],
                "properties": [orjson.dumps(m.get("properties") or {}).decode() for m in rows]})  # fmt: skip
            self.con.register("_incoming", table)
            self.con.execute("BEGIN TRANSACTION")
            self.con.execute("INSERT INTO events SELECT * FROM _incoming")
            self.con.execute("COMMIT")
            self.con.unregister("_incoming")
            for _, loop, future in group:
                loop.call_soon_threadsafe(_done, future)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def app(writer: GroupWriter) -> Starlette:
    async def batch(request: Request) -> Response:
        body = orjson.loads(await request.body())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        writer.queue.put((body["batch"], loop, future))
        await future
        return Response(b'{"success":true}', media_type="application/json")

    return Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8400)
    ap.add_argument("--data", type=Path, required=True)
    a = ap.parse_args()
    a.data.mkdir(parents=True, exist_ok=True)
    uvicorn.run(app(GroupWriter(a.data / "floor.duckdb")), host="127.0.0.1", port=a.port,
                log_level="warning", access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
