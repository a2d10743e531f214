"""The whole server with its StateStore on a real PostgreSQL server (the scaled-out shape)."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.conftest import LiveServer, _new_pg_database
from traction.settings import Settings


def test_ingest_identity_and_admin_api_on_postgresql(tmp_path: Path, pg_server: str) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", state_url=_new_pg_database(pg_server), worker_poll_seconds=0.05
    )
    with LiveServer(settings) as server:
        ws = server.ctx.workspaces.create_workspace("PG")
        body = orjson.dumps({"batch": [
            {"type": "page", "anonymousId": "anon-pg", "messageId": "1"},
            {"type": "identify", "anonymousId": "anon-pg", "userId": "pg-user", "traits": {"db": "postgres"}, "messageId": "2"},
            {"type": "group", "userId": "pg-user", "groupId": "acme", "messageId": "3"},
            {"type": "track", "userId": "pg-user", "event": "x", "messageId": "4"},
        ]})  # fmt: skip
        with server.client() as c:
            for _ in range(2):  # the second time: all duplicates
                r = c.post(
                    "/v1/batch",
                    content=body,
                    auth=(ws.write_key, ""),
                    headers={"content-type": "application/json"},
                )
                assert r.status_code == 200, r.text
            person = c.get(
                "/api/v1/persons?distinct_id=anon-pg",
                headers={"Authorization": f"Bearer {ws.secret_key}"},
            ).json()
            events = c.get(
                f"/api/v1/persons/{person['id']}/events",
                headers={"Authorization": f"Bearer {ws.secret_key}"},
            ).json()
        assert person["traits"] == {"db": "postgres"} and person["accounts"] == ["acme"]
        assert sorted(person["distinct_ids"]) == ["anon-pg", "pg-user"]
        assert sorted(e["event_id"] for e in events) == ["1", "2", "3", "4"]
        assert {e["account_id"] for e in events if e["event_id"] in ("3", "4")} == {"acme"}
        assert server.ctx.state.engine.dialect.name == "postgresql"
