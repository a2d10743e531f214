"""Workspaces and people: roles (members cannot manage keys), invitations, isolation, and
the members API (fuzzed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, web_client
from tests.test_dashboard import login, page  # noqa: F401  (shared fixture)

PASSWORD = "s3cret-pass"


@pytest.fixture
def team(server: LiveServer) -> dict[str, Any]:
    svc = server.ctx.workspaces
    acme, other = svc.create_workspace("Acme"), svc.create_workspace("Other")
    svc.create_user("ada@acme.io", PASSWORD, [acme.id], "admin")
    svc.create_user("max@acme.io", PASSWORD, [acme.id], "member")
    svc.create_user("olga@other.io", PASSWORD, [other.id], "admin")
    return {"acme": acme, "other": other}


@contextmanager
def signed_in(server: LiveServer, email: str) -> Iterator[httpx.Client]:
    with web_client(server, email, PASSWORD) as c:
        yield c


def test_a_member_uses_the_product_but_cannot_manage_keys_or_members(
    server: LiveServer, team: dict[str, Any]
) -> None:
    ws = team["acme"].id
    with signed_in(server, "max@acme.io") as c:
        assert c.get(f"/w/{ws}/scorecard").status_code == 200
        assert c.get(f"/w/{ws}/events").status_code == 200
        nav = c.get(f"/w/{ws}/events").text
        assert f"/w/{ws}/keys" not in nav and f"/w/{ws}/members" not in nav
        assert c.get(f"/w/{ws}/keys").status_code == 403
        assert c.post(f"/w/{ws}/keys", data={"scope": "admin", "name": "x"}).status_code == 403
        key_id = server.ctx.workspaces.list_keys(ws)[0].id
        assert c.post(f"/w/{ws}/keys/{key_id}/revoke").status_code == 403
        assert server.ctx.workspaces.list_keys(ws)[0].revoked_at is None
        assert c.get(f"/w/{ws}/members").status_code == 403
        assert (
            c.post(f"/w/{ws}/members", data={"email": "x@y.io", "role": "admin"}).status_code == 403
        )
        assert (
            c.post(f"/w/{ws}/settings", data={"timezone": "UTC", "kpi_config": "{}"}).status_code
            == 403
        )
        # and another workspace does not exist for them
        for path in ("scorecard", "events", "keys", "members", "persons"):
            assert c.get(f"/w/{team['other'].id}/{path}").status_code == 404
    with signed_in(server, "ada@acme.io") as c:
        assert c.get(f"/w/{ws}/keys").status_code == 200
        assert c.post(f"/w/{ws}/keys", data={"scope": "write", "name": "ios"}).status_code == 200
        assert c.get(f"/w/{team['other'].id}/scorecard").status_code == 404


def test_invitations_join_exactly_one_workspace(server: LiveServer, team: dict[str, Any]) -> None:
    ws = team["acme"].id
    with signed_in(server, "ada@acme.io") as c:
        r = c.post(f"/w/{ws}/members", data={"email": "New@Acme.io", "role": "member"})
        assert r.status_code == 200
        link = r.text.split('data-testid="invite-link">')[1].split("<")[0]
        # an existing user is added at once, no link
        r = c.post(f"/w/{ws}/members", data={"email": "olga@other.io", "role": "admin"})
        assert "olga@other.io is now admin here" in r.text
        assert (
            c.post(f"/w/{ws}/members", data={"email": "nope", "role": "member"}).status_code == 422
        )
    token_path = link.removeprefix(server.url)
    with httpx.Client(base_url=server.url) as guest:
        assert "new@acme.io" in guest.get(token_path).text
        r = guest.post(token_path, data={"password": "short"})
        assert r.status_code == 422 and "at least 8 characters" in r.text
        r = guest.post(token_path, data={"password": "a-good-password"})
        assert r.status_code == 303 and r.headers["location"] == f"/w/{ws}/scorecard"
        page = guest.get(f"/w/{ws}/scorecard").text
        assert page.count("<option value=") == 1 and "Acme" in page  # exactly their workspace
        assert guest.get(f"/w/{team['other'].id}/scorecard").status_code == 404
        assert guest.get(f"/w/{ws}/keys").status_code == 403  # invited as a member
        assert guest.get(token_path).status_code == 404  # used once
    names = {
        w.name
        for w in server.ctx.workspaces.user_workspaces(
            server.ctx.workspaces.find_user("olga@other.io").id
        )
    }  # type: ignore[union-attr]
    assert names == {"Acme", "Other"}


def test_an_invitation_never_signs_in_to_an_existing_account(
    server: LiveServer, team: dict[str, Any]
) -> None:
    token = server.ctx.workspaces.invite("late@acme.io", team["acme"].id, "admin")
    server.ctx.workspaces.create_user("late@acme.io", "their-own-pass", [])  # signed up since
    with httpx.Client(base_url=server.url) as guest:
        r = guest.post(f"/invite/{token}", data={"password": "a-guess-1234"})
        assert r.status_code == 422 and "has an account already" in r.text
        r = guest.post(f"/invite/{token}", data={"password": "their-own-pass"})
        assert r.status_code == 303


def test_creating_a_workspace_makes_you_its_admin(server: LiveServer, team: dict[str, Any]) -> None:
    with signed_in(server, "max@acme.io") as c:
        r = c.post("/workspaces/new", data={"name": "Side project", "timezone": "Europe/Paris"})
        assert r.status_code == 200 and 'data-testid="created-write-key">tr_pub_' in r.text
        created = server.ctx.workspaces.find_workspace("Side project")
        assert created is not None and created.timezone == "Europe/Paris"
        assert c.get(f"/w/{created.id}/keys").status_code == 200  # admin there
        assert (
            c.post("/workspaces/new", data={"name": "X", "timezone": "Mars/Base"}).status_code
            == 422
        )


def test_members_api(server: LiveServer, team: dict[str, Any]) -> None:
    ws = team["acme"]
    admin = httpx.Client(base_url=server.url, auth=(ws.secret_key, ""))
    r = admin.post("/api/v1/members", json={"email": "olga@other.io", "role": "member"})
    assert r.status_code == 201 and r.json()["status"] == "added"
    r = admin.post("/api/v1/members", json={"email": "fresh@acme.io"})
    assert r.status_code == 201 and r.json()["invite_url"].startswith(server.url + "/invite/")
    listed = admin.get("/api/v1/members").json()
    assert {m["email"]: m["role"] for m in listed["members"]} == {
        "ada@acme.io": "admin", "max@acme.io": "member", "olga@other.io": "member"
    }  # fmt: skip
    assert [i["email"] for i in listed["invites"]] == ["fresh@acme.io"]
    olga = next(m for m in listed["members"] if m["email"] == "olga@other.io")
    assert admin.delete(f"/api/v1/members/{olga['user_id']}").status_code == 200
    assert admin.delete(f"/api/v1/members/{olga['user_id']}").status_code == 404
    writer = httpx.Client(base_url=server.url, auth=(ws.write_key, ""))
    assert writer.get("/api/v1/members").status_code == 403
    assert writer.post("/api/v1/members", json={"email": "a@b.io"}).status_code == 403


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"email": st.one_of(st.text(max_size=40), st.emails(), json_values)},
        optional={"role": st.one_of(st.sampled_from(["admin", "member", "owner"]), json_values)},
    ),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_members_api_fuzz_never_5xx(server: LiveServer, team: dict[str, Any], body: Any) -> None:
    r = httpx.post(server.url + "/api/v1/members", json=body, auth=(team["acme"].secret_key, ""))
    assert r.status_code in (201, 422), r.text


@pytest.mark.browser
def test_invite_a_teammate_by_clicking(  # type: ignore[no-untyped-def]
    page,  # noqa: F811
    server: LiveServer,
    team: dict[str, Any],
    browser,
) -> None:
    login(page, server, PASSWORD, "ada@acme.io")
    page.wait_for_url("**/scorecard")
    page.get_by_test_id("new-workspace").click()
    page.fill("#ws-name", "Gamma")
    page.get_by_role("button", name="Create workspace").click()
    page.get_by_test_id("workspace-created").wait_for()
    page.get_by_role("link", name="invite your team").click()
    form = page.get_by_test_id("invite-form")
    form.locator("input[name=email]").fill("kim@acme.io")
    form.get_by_role("button", name="Invite").click()
    link = page.get_by_test_id("invite-link").inner_text()
    guest = browser.new_context().new_page()
    guest.goto(link)
    guest.fill("#password", "kims-password")
    guest.get_by_role("button", name="Join").click()
    guest.wait_for_url("**/scorecard")
    options = guest.get_by_test_id("workspace-switcher").locator("option").all_inner_texts()
    assert options == ["Gamma"]
    assert guest.get_by_role("link", name="API keys").count() == 0
    guest.context.close()
