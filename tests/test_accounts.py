"""Accounts (groups): the read model on SQLite and PostgreSQL, the API and the pages."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)
from traction.context import Context
from traction.ingest.domain import normalize_segment

MESSAGES = [
    {
        "type": "identify",
        "userId": "ann",
        "traits": {"email": "ann@acme.io"},
        "messageId": "1",
        "timestamp": "2026-03-01T09:00:00Z",
    },
    {
        "type": "group",
        "userId": "ann",
        "groupId": "acme",
        "traits": {"name": "Acme", "plan": "pro"},
        "messageId": "2",
        "timestamp": "2026-03-01T09:01:00Z",
    },
    {
        "type": "group",
        "userId": "bob",
        "groupId": "acme",
        "messageId": "3",
        "timestamp": "2026-03-01T10:00:00Z",
    },
    {
        "type": "group",
        "userId": "bob",
        "groupId": "globex",
        "traits": {"name": "Globex"},
        "messageId": "4",
        "timestamp": "2026-03-01T11:00:00Z",
    },
    {
        "type": "track",
        "userId": "ann",
        "event": "report_created",
        "context": {"groupId": "acme"},
        "messageId": "5",
    },
]


def test_accounts_read_model(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    other = ctx.workspaces.create_workspace("B").id
    assert not ctx.ingest.ingest_sync(ws, MESSAGES, normalize_segment).rejected
    listed = {a["key"]: a for a in ctx.accounts.list(ws)}
    assert {k: (a["members"], a["traits"].get("name")) for k, a in listed.items()} == {
        "acme": (2, "Acme"),
        "globex": (1, "Globex"),
    }
    acme = ctx.accounts.get(ws, "acme")
    assert acme is not None and acme.traits == {"name": "Acme", "plan": "pro"}
    assert [m["label"] for m in acme.members] == [
        "ann@acme.io",
        ctx.persons.by_distinct_id(ws, "bob").id,
    ]  # type: ignore[union-attr]
    assert ctx.accounts.get(other, "acme") is None and ctx.accounts.list(other) == []
    events = ctx.events.recent(ws, account_id="acme")
    # ann's identify came before she joined acme (same batch): it has no account
    assert {e["event_id"] for e in events} == {"2", "3", "5"}
    assert (
        acme.members[0]["joined_at"].isoformat() == "2026-03-01T09:01:00"
    )  # the group call's time


def test_accounts_api(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("H")
    other = server.ctx.workspaces.create_workspace("O")
    server.ctx.ingest.ingest_sync(ws.id, MESSAGES, normalize_segment)
    with server.client() as c:
        auth = {"Authorization": f"Bearer {ws.secret_key}"}
        assert sorted(a["key"] for a in c.get("/api/v1/accounts", headers=auth).json()) == [
            "acme",
            "globex",
        ]
        acme = c.get("/api/v1/accounts/acme", headers=auth).json()
        assert len(acme["members"]) == 2 and acme["traits"]["plan"] == "pro"
        assert (
            c.get(
                "/api/v1/accounts/acme", headers={"Authorization": f"Bearer {other.secret_key}"}
            ).status_code
            == 404
        )
        assert (
            c.get(
                "/api/v1/accounts", headers={"Authorization": f"Bearer {ws.write_key}"}
            ).status_code
            == 403
        )


@pytest.mark.browser
def test_account_pages(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    server.ctx.ingest.ingest_sync(ws.id, MESSAGES, normalize_segment)
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{ws.id}/accounts")
    page.get_by_test_id("accounts-table").get_by_role("link", name="acme").click()
    assert page.get_by_test_id("account-title").inner_text() == "Acme"
    assert "ann@acme.io" in page.get_by_test_id("account-members").inner_text()
    assert "report_created" in page.get_by_test_id("account-events").inner_text()
    page.get_by_test_id("account-members").get_by_role("link", name="ann@acme.io").click()
    page.get_by_role("link", name="acme").first.click()  # the person page links back to the account
    assert page.get_by_test_id("account-title").inner_text() == "Acme"
