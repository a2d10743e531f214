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
