"""Journeys end to end on real parts: events ingested, the reactor enters people, the engine
moves their runs on a clock the test sets, and a real SMTP server (aiosmtpd) on loopback
receives the emails, whose headers and links are read back; goals end runs; waits for events
wake early or time out; unsubscribing suppresses; the holdout's lift comes from the
experiment engine and equals a hand computation."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import SMTPSink
from traction.context import Context
from traction.engage.domain.journeys import JourneyError
from traction.engage.reactors import JourneyReactor
from traction.ingest.domain import normalize_segment
from traction.settings import Settings
from traction.worker import ReactorRunner

T0 = datetime(2026, 6, 1, 9)
WELCOME: dict[str, Any] = {
    "name": "Welcome and onboarding nudge",
    "trigger": {"event": "signed_up"},
    "goal": {"event": {"event": "activated"}, "within_days": 14},
    "steps": [
        {"id": "welcome", "type": "email", "email": {
            "subject": "Welcome, {{ person.first_name | default('there') }}",
            "text": "Hi {{ person.first_name | default('there') }}, start with a project.",
            "html": '<p>Hi! <a href="https://app.example.com/projects/new">Create a project</a></p>'}},
        {"id": "wait", "type": "wait", "until_event": {"event": "project_created"}, "timeout_hours": 48,
         "on_event": "done", "on_timeout": "is_free"},
        {"id": "is_free", "type": "branch", "condition": [{"property": "plan", "source": "person", "value": "free"}],
         "then": "nudge", "else": "done"},
        {"id": "nudge", "type": "email", "email": {"subject": "Need a hand?", "text": "Reply and we help."}},
        {"id": "done", "type": "exit"},
    ],
}  # fmt: skip


def ts(t: datetime) -> str:
    return t.isoformat() + "Z"


def person(user: str, at: datetime, **traits: Any) -> list[dict[str, Any]]:
    return [{"type": "identify", "userId": user, "timestamp": ts(at), "messageId": f"id-{user}",
             "traits": {"email": f"{user}@example.com", **traits}}]  # fmt: skip


def track(user: str, event: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": ts(at),
            "messageId": f"{user}-{event}-{at.timestamp()}", "properties": props}  # fmt: skip


def with_smtp(settings: Settings, smtp: SMTPSink) -> Context:
    return Context.open(
        settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port})
    )


def react(ctx: Context) -> None:
    ReactorRunner(
        ctx.state, ctx.events, [JourneyReactor(ctx.engage.engine)], ctx.metrics
    ).run_once()


def run(ctx: Context, now: datetime) -> None:
    """The worker's round at `now`: due runs moved, their messages sent."""
    ctx.engage.work(now)


def wait_for(cond: Any, seconds: float = 10) -> None:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_welcome_journey_over_smtp(settings: Settings, smtp: SMTPSink) -> None:
    ctx = with_smtp(settings, smtp)
    try:
        ws = ctx.workspaces.create_workspace("Acme").id
        ctx.engage.put(ws, "welcome", WELCOME)
        msgs = (person("ann", T0, first_name="Ann", plan="free") + person("bob", T0, plan="free")
                + person("cat", T0, plan="pro") + person("dan", T0, plan="free"))  # fmt: skip
        msgs += [
            track(u, "signed_up", T0 + timedelta(minutes=1)) for u in ("ann", "bob", "cat", "dan")
        ]
        assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
        react(ctx)
        run(ctx, T0 + timedelta(minutes=2))
        assert sorted(m["To"] for m in smtp.messages) == [
            f"{u}@example.com" for u in ("ann", "bob", "cat", "dan")
        ]
        ann = next(m for m in smtp.messages if m["To"] == "ann@example.com")
        assert ann["Subject"] == "Welcome, Ann"
        assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsub = ann["List-Unsubscribe"].strip("<>")
        assert unsub.startswith("http://127.0.0.1:8000/m/u/")
        text = (
            next(p for p in ann.walk() if p.get_content_type() == "text/plain")
            .get_payload(decode=True)
            .decode()
        )
        html = (
            next(p for p in ann.walk() if p.get_content_type() == "text/html")
            .get_payload(decode=True)
            .decode()
        )
        assert "Hi Ann, start with a project." in text and unsub in text
        assert (
            "/m/c/" in html
            and "https%3A%2F%2Fapp.example.com%2Fprojects%2Fnew" in html
            and "/m/o/" in html
        )
        # the same step for the same entry never sends twice, whatever the worker does again
        run(ctx, T0 + timedelta(minutes=3))
        assert len(smtp.messages) == 4 and len(set(smtp.ids())) == 4
        later = [track("bob", "project_created", T0 + timedelta(hours=3)),  # wakes bob's wait early
                 track("dan", "activated", T0 + timedelta(hours=30))]  # dan reaches the goal  # fmt: skip
        for m in later:
            ctx.ingest.ingest_sync(ws, [m], normalize_segment)
            react(ctx)
            run(ctx, datetime.fromisoformat(m["timestamp"][:-1]))
        # 48 h later: ann (free, no project) gets the nudge; bob woke early and exited; cat is
        # on pro (the branch's else); dan reached the goal
        run(ctx, T0 + timedelta(hours=49))
        assert [m["To"] for m in smtp.messages[4:]] == ["ann@example.com"]
        runs = {d["person_id"]: d for d in ctx.engage.deliveries(ws)}
        assert len(runs) == 4
        s = ctx.engage.stats(ws, "welcome")
        assert s["entered"] == 4 and s["reached_goal"] == 1 and s["active"] == 0
        assert s["messages"]["welcome"]["sent"] == 4 and s["messages"]["nudge"]["sent"] == 1
    finally:
        ctx.close()


def test_bad_journeys_are_refused_with_their_place(sqlite_ctx: Context) -> None:
    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Acme").id
    steps = WELCOME["steps"]
    bad = [
        ({**WELCOME, "steps": [{"id": "x", "type": "sms"}]}, "steps[0]: unknown step type"),
        ({**WELCOME, "steps": [*steps[:2], {**steps[2], "condition": [{"property": "plan", "operator": "like", "value": 1}]}, *steps[3:]]},
         "steps[2].condition[0].operator"),
        ({**WELCOME, "steps": [{"id": "a", "type": "email", "email": {"subject": "Hi {{ person.name ", "text": "x"}}]},
         "steps[0].email.subject: template syntax error at line 1"),
        ({**WELCOME, "steps": [{"id": "a", "type": "email", "email": {"subject": "Hi {{ user.name }}", "text": "x"}}]},
         "steps[0].email.subject: {{ user }} is not provided"),
        ({**WELCOME, "steps": [{"id": "a", "type": "branch", "condition": [{"property": "p", "operator": "is_set"}], "then": "b", "else": "a"},
                               {"id": "b", "type": "exit"}]}, "a cycle (a → a)"),
        ({**WELCOME, "steps": [{"id": "a", "type": "wait", "hours": 1, "next": "zz"}]}, "steps[0].next: no step 'zz'"),
        ({**WELCOME, "steps": [{"id": "a", "type": "split", "paths": [{"weight": 0.5, "next": "a2"}, {"weight": 0.6, "next": "a2"}]},
                               {"id": "a2", "type": "exit"}]}, "weights must sum to 1"),
    ]  # fmt: skip
    for body, expected in bad:
        with pytest.raises(JourneyError) as e:
            ctx.engage.put(ws, "j", body)
        assert expected in str(e.value), (expected, str(e.value))
    # a trait no person has: refused once the workspace has seen traits
    ctx.ingest.ingest_sync(ws, person("ann", T0, first_name="Ann"), normalize_segment)
    ReactorRunner(ctx.state, ctx.events, [__import__("traction.catalog.reactors", fromlist=["x"]).CatalogReactor(ctx.catalog)],
                  ctx.metrics).run_once()  # fmt: skip
    body = {
        **WELCOME,
        "steps": [
            {
                "id": "a",
                "type": "email",
                "email": {"subject": "Hi {{ person.nickname }}", "text": "x"},
            }
        ],
    }
    with pytest.raises(JourneyError, match="no person trait 'nickname'"):
        ctx.engage.put(ws, "j", body)
    # all or nothing: a good journey beside a bad one is not saved either
    with pytest.raises(JourneyError, match="bad: steps"):
        ctx.engage.apply(ws, {"good": WELCOME, "bad": {**WELCOME, "steps": []}})
    assert ctx.engage.journeys(ws) == []


def test_unsubscribe_one_click_and_suppression(settings: Settings, smtp: SMTPSink) -> None:
    """The link in the email unsubscribes with one POST (RFC 8058); the next email to that
    address is suppressed, not sent; transactional mail is not held by caps or quiet hours."""
    import httpx

    from tests.conftest import LiveServer

    live = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "run_worker": False}
    )
    with LiveServer(live) as server:
        ctx = server.ctx
        ws = ctx.workspaces.create_workspace("Acme").id
        journey = {"trigger": {"event": "signed_up"}, "steps": [
            {"id": "hello", "type": "email", "email": {"subject": "Hello", "text": "Hi"}},
            {"id": "pause", "type": "wait", "hours": 24},
            {"id": "again", "type": "email", "email": {"subject": "Again", "text": "Hi again"}}]}  # fmt: skip
        ctx.engage.put(ws, "two", journey)
        ctx.ingest.ingest_sync(
            ws, [*person("ann", T0), track("ann", "signed_up", T0)], normalize_segment
        )
        react(ctx)
        run(ctx, T0 + timedelta(minutes=1))
        (first,) = smtp.messages
        url = first["List-Unsubscribe"].strip("<>").replace("http://127.0.0.1:8000", server.url)
        assert "Stop emails to <b>ann@example.com</b>?" in httpx.get(url).text  # GET asks first
        assert ctx.engage.suppressions(ws) == []
        r = httpx.post(url, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and ctx.engage.suppressions(ws)[0]["email"] == "ann@example.com"
        assert httpx.post(url[:-3] + "xyz").status_code == 404  # a forged or cut link
        run(ctx, T0 + timedelta(hours=25))
        assert len(smtp.messages) == 1
        assert {d["step"]: d["status"] for d in ctx.engage.deliveries(ws)} == {
            "hello": "sent",
            "again": "suppressed",
        }
        # the open pixel and the click redirect are counted once
        ids = [d["id"] for d in ctx.engage.deliveries(ws) if d["step"] == "hello"]
        pixel = ctx.engage.links.pixel(ids[0]).replace("http://127.0.0.1:8000", server.url)
        assert httpx.get(pixel).headers["content-type"] == "image/gif"
        click = ctx.engage.links.click(ids[0], "https://example.com/x").replace(
            "http://127.0.0.1:8000", server.url
        )
        r = httpx.get(click)
        assert r.status_code == 302 and r.headers["location"] == "https://example.com/x"
        s = ctx.engage.stats(ws, "two")["messages"]["hello"]
        assert (s["opened"], s["clicked"], s["unsubscribed"]) == (
            1,
            1,
            1,
        )  # its link: this message's


def test_bounces_suppress_and_are_counted(settings: Settings, smtp: SMTPSink) -> None:
    """A 550 at RCPT is a bounce: no retry, the address suppressed; a 450 is retried; a bounce
    or complaint reported later through the API marks the message and suppresses."""
    import httpx

    from tests.conftest import LiveServer

    smtp.refuse = {"bob@example.com": "550 5.1.1 <bob@example.com>: no such user",
                   "cat@example.com": "450 4.2.1 mailbox busy, try later"}  # fmt: skip
    live = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "run_worker": False}
    )
    with LiveServer(live) as server:
        ctx = server.ctx
        ws = ctx.workspaces.create_workspace("Acme")
        ctx.engage.put(ws.id, "hello", {"trigger": {"event": "signed_up"}, "steps": [
            {"id": "hello", "type": "email", "email": {"subject": "Hello", "text": "Hi"}}]})  # fmt: skip
        users = ("ann", "bob", "cat")
        msgs = [m for u in users for m in person(u, T0)] + [
            track(u, "signed_up", T0) for u in users
        ]
        ctx.ingest.ingest_sync(ws.id, msgs, normalize_segment)
        react(ctx)
        run(ctx, T0 + timedelta(minutes=1))
        got = {d["target"]: d for d in ctx.engage.deliveries(ws.id)}
        assert [m["To"] for m in smtp.messages] == ["ann@example.com"]
        assert (
            got["bob@example.com"]["status"] == "bounced"
            and "550" in got["bob@example.com"]["error"]
        )
        assert got["cat@example.com"]["status"] == "failed"  # retried later
        assert {r["email"]: r["reason"] for r in ctx.engage.suppressions(ws.id)} == {
            "bob@example.com": "bounced"
        }
        smtp.refuse.pop("cat@example.com")
        run(ctx, T0 + timedelta(hours=2))  # after the backoff
        assert sorted(m["To"] for m in smtp.messages) == ["ann@example.com", "cat@example.com"]
        auth = {"Authorization": f"Bearer {ws.secret_key}"}
        ann_id = got["ann@example.com"]["message_id"]
        r = httpx.post(f"{server.url}/api/v1/bounces", headers=auth, json={
            "email": "ann@example.com", "kind": "complaint", "message_id": ann_id, "reason": "abuse report"})  # fmt: skip
        assert r.status_code == 200 and r.json() == {
            "delivery": got["ann@example.com"]["id"],
            "suppressed": True,
        }
        r = httpx.post(
            f"{server.url}/api/v1/bounces",
            headers=auth,
            json={"email": "cat@example.com", "kind": "soft"},
        )
        assert r.json() == {"delivery": None, "suppressed": False}
        assert httpx.post(f"{server.url}/api/v1/bounces", headers=auth,
                          json={"email": "x@example.com", "message_id": "<nope@x>"}).status_code == 404  # fmt: skip
        assert (
            httpx.post(
                f"{server.url}/api/v1/bounces", headers=auth, json={"email": "nope"}
            ).status_code
            == 422
        )
        reasons = {r["email"]: r["reason"] for r in ctx.engage.suppressions(ws.id)}
        assert reasons == {"bob@example.com": "bounced", "ann@example.com": "complained"}
        m = ctx.engage.stats(ws.id, "hello")["messages"]["hello"]
        assert (m.get("sent"), m.get("bounced")) == (1, 2)


def test_webhooks_are_signed_retried_and_dead_lettered(sqlite_ctx: Context) -> None:
    """A receiver that verifies the signature gets the payload once; a target that is down is
    retried with growing delays, then lands in the dead-letter list, and "retry" sends it."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tests.conftest import free_port
    from traction.engage import webhooks

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Acme").id
    secret = ctx.engage.webhook_secret(ws)
    got: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = webhooks.verify(secret, self.headers["X-Traction-Signature"], body)
            got.append((dict(self.headers), body))
            self.send_response(200 if ok else 400)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    up = HTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens here
    ctx.engage.put(ws, "hooks", {"trigger": {"event": "$limit_reached"}, "steps": [
        {"id": "crm", "type": "webhook", "url": f"http://127.0.0.1:{up.server_port}/hook"},
        {"id": "slack", "type": "webhook", "url": down, "format": "slack",
         "text": "{{ person.email }} hit the {{ event.feature }} limit"}]})  # fmt: skip
    ctx.ingest.ingest_sync(
        ws,
        [*person("ann", T0), track("ann", "$limit_reached", T0, feature="projects")],
        normalize_segment,
    )
    react(ctx)
    now = T0 + timedelta(minutes=1)
    run(ctx, now)
    ((headers, body),) = got
    assert webhooks.verify(secret, headers["X-Traction-Signature"], body)
    assert headers["Idempotency-Key"].endswith(":crm")
    import orjson

    assert orjson.loads(body)["event"] == {"feature": "projects"}
    dead = None
    delays = []
    for _ in range(10):
        d = next(x for x in ctx.engage.deliveries(ws) if x["step"] == "slack")
        if d["status"] == "dead":
            dead = d
            break
        assert d["status"] == "failed"
        with ctx.state.session() as s:
            from traction.engage.models import Delivery

            row = s.get(Delivery, d["id"])
            assert row is not None and row.next_attempt_at is not None
            delays.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at
        run(ctx, now)
    assert (
        dead is not None
        and dead["attempts"] == webhooks.MAX_ATTEMPTS
        and "ConnectError" in dead["error"]
    )
    assert delays == [30, 60, 120, 240, 480]
    assert len(got) == 1  # the good one was never sent again
    # the receiver comes up at the dead target's address: "retry" delivers it
    from traction.engage.delivery import retry

    retry(ctx.state, ws, dead["id"])
    port = int(down.split(":")[2].split("/")[0])
    up2 = HTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=up2.serve_forever, daemon=True).start()
    run(ctx, now)
    assert orjson.loads(got[-1][1]) == {"text": "ann@example.com hit the projects limit"}
    assert next(x for x in ctx.engage.deliveries(ws) if x["step"] == "slack")["status"] == "sent"
    up.shutdown()
    up2.shutdown()


def test_holdout_lift_by_the_experiment_engine(ctx: Context) -> None:
    """400 people enter; the 30% holdout (a stable hash) gets nothing; the treatment activates
    more. The journey's lift equals the two arms' conversion rates computed by hand, and
    Welch's test on the 0/1 outcomes gives its p-value."""
    import random

    from scipy import stats as sps

    from traction.engage.domain.timing import in_holdout

    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.engage.put(ws, "nudge", {"trigger": {"event": "signed_up"}, "holdout": 0.3,
                                 "goal": {"event": {"event": "activated"}, "within_days": 7},
                                 "steps": [{"id": "n", "type": "email", "email": {"subject": "Go", "text": "Go"}}]})  # fmt: skip
    rng = random.Random(3)
    msgs: list[dict[str, Any]] = []
    outcome: dict[str, list[float]] = {"holdout": [], "treatment": []}
    for i in range(400):
        u = f"p{i}"
        msgs += [*person(u, T0), track(u, "signed_up", T0 + timedelta(minutes=i))]
    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    react(ctx)
    run(ctx, T0 + timedelta(hours=8))
    with ctx.state.session() as s:
        from sqlalchemy import select

        from traction.engage.models import Run

        arms = {r.person_id: r.arm for r in s.scalars(select(Run))}
    later: list[dict[str, Any]] = []
    for i in range(400):
        u = f"p{i}"
        view = ctx.persons.by_distinct_id(ws, u)
        assert view is not None
        pid = view.id
        arm = arms[pid]
        assert (arm == "holdout") == in_holdout("nudge", u, 0.3)  # by their own id
        hit = rng.random() < (0.2 if arm == "holdout" else 0.35)
        outcome[arm].append(1.0 if hit else 0.0)
        if hit:
            later.append(track(u, "activated", T0 + timedelta(days=2, minutes=i)))
    ctx.ingest.ingest_sync(ws, later, normalize_segment)
    wait_for(lambda: ctx.events.count(ws) >= 400 * 3 + len(later))  # the $journey_entered too
    lift = ctx.engage.stats(ws, "nudge")["lift"]
    h, t = outcome["holdout"], outcome["treatment"]
    assert lift["units"] == {"holdout": len(h), "treatment": len(t)}
    assert lift["rates"]["holdout"] == pytest.approx(sum(h) / len(h))
    assert lift["rates"]["treatment"] == pytest.approx(sum(t) / len(t))
    assert lift["lift"] == pytest.approx((sum(t) / len(t)) / (sum(h) / len(h)) - 1)
    assert lift["p_value"] == pytest.approx(sps.ttest_ind(t, h, equal_var=False).pvalue, rel=1e-6)
    assert 0.2 < len(h) / 400 < 0.4


def test_milestone_trait_change_and_inactivity_triggers(ctx: Context) -> None:
    """The 3rd report (not the 2nd or 4th), a trait change to `plan: pro` (an identify), and
    "no session for 7 days" (the periodic scan, once per lapse, not for long-gone people)."""
    ws = ctx.workspaces.create_workspace("Acme").id
    step = [{"id": "m", "type": "inapp", "inapp": {"title": "!"}}]
    ctx.engage.apply(ws, {
        "third": {"trigger": {"event": "report_created", "occurrence": 3}, "entry": {"policy": "again", "after_days": 0.001}, "steps": step},
        "pro": {"trigger": {"identify": True, "filters": [{"property": "plan", "value": "pro"}]}, "steps": step},
        "lapsed": {"trigger": {"inactive": {"event": "session_started", "days": 7}}, "steps": step},
    })  # fmt: skip
    msgs = person("ann", T0) + person("bob", T0 - timedelta(days=30)) + person("cat", T0)
    msgs += [track("ann", "report_created", T0 + timedelta(hours=h)) for h in range(5)]
    msgs += [
        {
            "type": "identify",
            "userId": "cat",
            "traits": {"plan": "pro"},
            "timestamp": ts(T0 + timedelta(hours=1)),
            "messageId": "up",
        }
    ]
    msgs += [track("ann", "session_started", T0), track("cat", "session_started", T0 + timedelta(days=5)),
             track("bob", "session_started", T0 - timedelta(days=30))]  # long gone  # fmt: skip
    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    react(ctx)
    assert ctx.engage.stats(ws, "third")["entered"] == 1  # only the 3rd report
    assert ctx.engage.stats(ws, "pro")["entered"] == 1
    now = T0 + timedelta(days=8)
    assert (
        ctx.engage.scan_inactive(now) == 1
    )  # ann (8 days); cat was seen 3 days ago; bob is long gone
    assert ctx.engage.scan_inactive(now + timedelta(hours=1)) == 0  # once per lapse
    assert ctx.engage.scan_inactive(T0 + timedelta(days=13)) == 1  # cat's turn


def test_the_simulated_journeys_are_measured(sqlite_ctx: Context) -> None:
    """The simulator runs the three recipes through the real engine on simulated time: the
    welcome nudge (a true effect: 50% of nudged people invite a teammate the next day) shows
    a significant lift over its holdout; the win-back email is measured on both arms; nobody
    entered before the journeys were launched."""
    from traction.simulate.engage import JOURNEYS
    from traction.simulate.runner import run_simulation
    from traction.simulate.world import SimulationParams

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Sim").id
    ctx.engage.apply(ws, JOURNEYS)
    params = SimulationParams(
        people=6_000, days=60, seed=5, nudge_invite_rate=0.5, journeys_days_before_end=40
    )
    run_simulation(ctx, ws, params)
    wait_for(lambda: ctx.engage.stats(ws, "welcome")["lift"].get("units") is not None, 20)
    welcome = ctx.engage.stats(ws, "welcome")
    assert welcome["lift"]["significant"] and welcome["lift"]["lift"] > 0.1, welcome["lift"]
    assert welcome["messages"]["nudge"]["outbox"] > 0 and welcome["messages"]["nudge"]["held"] > 0
    winback = ctx.engage.stats(ws, "winback")["lift"]
    # measured on both arms, and no effect found where none was put in (the email's effect
    # is 0). Holdouts hash the person's own id, so the same seed gives the same arms (they
    # once hashed the internal person id, random per run: the rates swung between runs)
    assert set(winback["units"]) == {"holdout", "treatment"} and min(winback["units"].values()) > 20
    assert not winback["significant"], winback
    launch = datetime.combine(params.start, datetime.min.time()) + timedelta(days=20)
    with ctx.state.session() as s:
        from sqlalchemy import func, select

        from traction.engage.models import Run

        first = s.scalar(select(func.min(Run.entered_at)).where(Run.workspace_id == ws))
    assert first is not None and first >= launch - timedelta(
        days=7
    )  # (inactivity looks back a week)


def test_split_paths_are_compared_on_the_goal(sqlite_ctx: Context) -> None:
    """An A/B split of two messages: each path's goal rate (from the `$journey_split`
    exposures, treatment arm only) equals a hand count, and B against A is Welch's test."""
    import random

    from scipy import stats as sps

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.engage.put(ws, "prompt", {"trigger": {"event": "limit_hit"}, "holdout": 0.1,
                                  "goal": {"event": {"event": "upgraded"}, "within_days": 7},
                                  "steps": [{"id": "ab", "type": "split", "paths": [{"weight": 0.5, "next": "a"}, {"weight": 0.5, "next": "b"}]},
                                            {"id": "a", "type": "inapp", "next": "end", "inapp": {"title": "A"}},
                                            {"id": "b", "type": "inapp", "inapp": {"title": "B"}},
                                            {"id": "end", "type": "exit"}]})  # fmt: skip
    msgs: list[dict[str, Any]] = []
    for i in range(500):
        msgs += [*person(f"p{i}", T0), track(f"p{i}", "limit_hit", T0 + timedelta(minutes=i))]
    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    react(ctx)
    run(ctx, T0 + timedelta(hours=9))
    path = {
        d["person_id"]: d["step"]
        for d in ctx.engage.deliveries(ws, limit=1000)
        if d["status"] != "held"
    }
    rng = random.Random(7)
    outcome: dict[str, list[float]] = {"a": [], "b": []}
    later = []
    for i in range(500):
        view = ctx.persons.by_distinct_id(ws, f"p{i}")
        assert view is not None
        if view.id not in path:
            continue  # the holdout
        hit = rng.random() < (0.1 if path[view.id] == "a" else 0.25)
        outcome[path[view.id]].append(float(hit))
        if hit:
            later.append(track(f"p{i}", "upgraded", T0 + timedelta(days=1, minutes=i)))
    ctx.ingest.ingest_sync(ws, later, normalize_segment)
    n_split = len(outcome["a"]) + len(outcome["b"])
    wait_for(
        lambda: (
            ctx.engage.stats(ws, "prompt")["splits"]["ab"].get("units", {})
            == {"a": len(outcome["a"]), "b": len(outcome["b"])}
        ),
        20,
    )
    split = ctx.engage.stats(ws, "prompt")["splits"]["ab"]
    a, b = outcome["a"], outcome["b"]
    assert split["rates"] == pytest.approx({"a": sum(a) / len(a), "b": sum(b) / len(b)})
    (cmp,) = split["comparisons"]
    assert (cmp["arm"], cmp["against"]) == ("b", "a") and cmp["significant"]
    assert cmp["p_value"] == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-6)
    assert 400 < n_split < 500


def test_checklist_completion_funnel(sqlite_ctx: Context) -> None:
    """Shown to three of four people; the funnel counts those who had done the first task, the
    first two, all three (from the log, in any order), and nobody it was not shown to."""
    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.engage.put(ws, "onboarding", {"trigger": {"event": "signed_up"}, "steps": [
        {"id": "list", "type": "inapp", "inapp": {"kind": "checklist", "title": "Get started", "tasks": [
            {"title": "Create a project", "event": "project_created"},
            {"title": "Invite a teammate", "event": "teammate_invited"},
            {"title": "Share a report", "event": "report_shared"}]}}]})  # fmt: skip
    users = ("ann", "bob", "cat", "dan")
    msgs = [m for u in users for m in person(u, T0)] + [track(u, "signed_up", T0) for u in users]
    done = {"ann": ["project_created", "teammate_invited", "report_shared"], "bob": ["project_created"],
            "cat": ["teammate_invited", "report_shared"], "dan": ["project_created", "teammate_invited", "report_shared"]}  # fmt: skip
    at = T0 + timedelta(hours=1)
    msgs += [
        track(u, e, at + timedelta(minutes=i)) for u, es in done.items() for i, e in enumerate(es)
    ]
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    react(ctx)
    run(ctx, T0 + timedelta(minutes=5))
    for d in ctx.engage.deliveries(ws):
        pid = d["person_id"]
        if ctx.persons.get(ws, pid).distinct_ids != ["dan"]:  # type: ignore[union-attr]
            ctx.engage.inapp_event(ws, pid, d["id"], "shown")
    funnel = ctx.engage.stats(ws, "onboarding")["checklists"]["list"]
    assert [(f["step"], f["people"]) for f in funnel] == [
        ("shown", 3), ("Create a project", 2), ("Invite a teammate", 1), ("Share a report", 1)]  # fmt: skip


def test_the_simulation_with_journeys_is_the_same_for_the_same_seed(tmp_path: Any) -> None:
    """Twice the same seed through the real engine: the same events (name, person, time) and
    the same entries (journey, person, arm, outcome)."""
    from sqlalchemy import select

    from traction.engage.models import Run
    from traction.identity.models import Identity
    from traction.simulate.engage import JOURNEYS
    from traction.simulate.runner import run_simulation
    from traction.simulate.world import SimulationParams

    params = SimulationParams(people=1200, days=30, seed=7, journeys_days_before_end=15)
    seen = []
    for i in range(2):
        ctx = Context.open(Settings(data_dir=tmp_path / str(i), log_json=False))
        try:
            ws = ctx.workspaces.create_workspace("Sim").id
            ctx.engage.apply(ws, JOURNEYS)
            run_simulation(ctx, ws, params)
            ctx.writer.stop()  # the system events too
            with ctx.events.reading() as cur:
                events = sorted(map(str, cur.execute(
                    "SELECT name, user_id, timestamp FROM events WHERE workspace_id = ?", [ws]).fetchall()))  # fmt: skip
            with ctx.state.session() as s:
                users = dict(s.execute(select(Identity.person_id, Identity.distinct_id)
                                       .where(Identity.is_user_id.is_(True))).all())  # fmt: skip
                runs = sorted((r.journey, users.get(r.person_id, ""), r.arm, r.status, str(r.entered_at))
                              for r in s.scalars(select(Run)))  # fmt: skip
        finally:
            ctx.close()
        seen.append((events, runs))
    assert len(seen[0][1]) > 50 and {r[2] for r in seen[0][1]} == {"holdout", "treatment"}
    assert seen[0][1] == seen[1][1]
    assert seen[0][0] == seen[1][0]


@pytest.mark.parametrize("batch_size", [1, 3, 5_000])
def test_a_goal_reached_in_the_batch_that_entered_them_ends_the_run(
    sqlite_ctx: Context, batch_size: int
) -> None:
    """How the log is cut into batches changes nothing: a person who signs up and activates
    before the reactor next runs (both events in one batch) has reached the goal, as one
    whose events come in separate batches has; one who did not is still in the journey."""
    from sqlalchemy import select

    from traction.engage.models import Run

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.engage.put(ws, "nudge", {"trigger": {"event": "signed_up"},
                                 "goal": {"event": {"event": "activated"}, "within_days": 7},
                                 "steps": [{"id": "w", "type": "wait", "hours": 24},
                                           {"id": "n", "type": "email", "email": {"subject": "Go", "text": "Go"}}]})  # fmt: skip
    msgs = [*person("ann", T0), track("ann", "signed_up", T0), track("ann", "activated", T0 + timedelta(hours=1)),
            *person("bob", T0), track("bob", "signed_up", T0 + timedelta(minutes=5))]  # fmt: skip
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    ReactorRunner(ctx.state, ctx.events, [JourneyReactor(ctx.engage.engine)], ctx.metrics,
                  batch_size=batch_size).run_once()  # fmt: skip
    ids = {u: ctx.persons.by_distinct_id(ws, u) for u in ("ann", "bob")}
    with ctx.state.session() as s:
        status = {r.person_id: r.status for r in s.scalars(select(Run))}
    assert {u: status[p.id] for u, p in ids.items() if p} == {"ann": "goal", "bob": "active"}
