"""Safe rollouts: the ramp keeps everyone who got the new value (GrowthBook's bucketing, with
our evaluator), the decisions (hold, ramp, complete, roll back) on hand-made results, and end
to end on both state stores: people are assigned by evaluating the flag the rollout wrote,
their exposures and outcomes ingested, and the maintenance check ramps a healthy rollout to
everyone and rolls back one whose guardrail got worse, saying why, in the flag's history."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.test_dashboard import page  # noqa: F401  (the browser fixture)
from traction.context import Context
from traction.experiments import rollout
from traction.experiments.domain import ExperimentError, Rollout, parse_experiment
from traction.flags.domain.evaluate import Context as EvalContext
from traction.flags.domain.evaluate import Evaluator
from traction.ingest.domain import normalize_segment
from traction.sdk.flags import exposure

T0 = datetime(2026, 6, 1, 9)
FLAG = {"value_type": "boolean", "default_value": False,
        "environments": {"production": {"enabled": True, "rules": []}}}  # fmt: skip
ERRORS = {"key": "errors", "name": "Errors shown", "kind": "count", "event": {"event": "error_shown"},
          "window_days": 1, "direction": "down"}  # fmt: skip
ROLLOUT = {"hypothesis": "the new editor is safe", "guardrails": [ERRORS],
           "rollout": {"flag": "new-editor", "value": True,
                       "steps": [{"percent": 10, "hours": 24}, {"percent": 50, "hours": 24},
                                 {"percent": 100, "hours": 0}]}}  # fmt: skip


def test_ramping_only_moves_units_into_the_rollout() -> None:
    plan = Rollout(flag="f", value=True)
    seen: dict[str, bool] = {}
    for percent in (5, 25, 50, 99):
        feature = {
            "defaultValue": False,
            "rules": [rollout.rule("exp", plan, False, percent, "person")],
        }
        ev = Evaluator({"features": {"f": feature}})
        on = {
            u: ev.evaluate("f", EvalContext(attributes={"id": u})).value
            for u in map(str, range(4000))
        }
        share = sum(on.values()) / len(on)
        assert abs(share - percent / 100) < 0.03, (percent, share)
        assert all(on[u] for u, was in seen.items() if was)  # nobody loses the new value
        seen = on


def _guardrail(significant: bool, worse: bool) -> dict[str, Any]:
    return {"role": "guardrail", "name": "Errors shown", "significant": significant, "worse": worse,
            "lift": 0.4, "ci": [-0.1, 0.9], "difference": 0.4, "difference_ci": [0.1, 0.7],
            "control": "control", "variation": "rollout", "means": {"control": 1.0, "rollout": 1.4},
            "p_value_adjusted": 0.001}  # fmt: skip


def test_decisions() -> None:
    plan = Rollout(flag="f", value=True, steps=[{"percent": 10, "hours": 24}, {"percent": 50, "hours": 24},
                                                {"percent": 100, "hours": 0}])  # type: ignore[list-item]  # fmt: skip
    t = T0
    ok = [_guardrail(False, True)]
    assert rollout.decide(plan, 0, t, t + timedelta(hours=23), ok).action == "hold"
    assert rollout.decide(plan, 0, t, t + timedelta(hours=24), None).action == "hold"  # no data
    d = rollout.decide(plan, 0, t, t + timedelta(hours=24), ok)
    assert (d.action, d.step) == ("ramp", 1)
    d = rollout.decide(plan, 1, t, t + timedelta(hours=25), ok)
    assert (d.action, d.step) == ("complete", 2)
    # significantly better is no reason to stop; significantly worse is, at any time
    assert (
        rollout.decide(plan, 1, t, t + timedelta(hours=1), [_guardrail(True, False)]).action
        == "hold"
    )
    d = rollout.decide(plan, 1, t, t + timedelta(hours=1), [_guardrail(True, True)])
    assert (
        d.action == "rollback"
        and "Errors shown got worse" in d.reason
        and "50% of traffic" in d.reason
    )
    assert (
        "1 → 1.4 per unit (+40%; difference +0.4, always-valid interval +0.1 to +0.7, p = 0.001)"
        in d.reason
    )


def test_bad_rollouts_are_refused() -> None:
    for change, expected in (
        ({"guardrails": []}, "guardrails: a safe rollout needs at least one guardrail"),
        ({"rollout": {**ROLLOUT["rollout"], "steps": [{"percent": 50}, {"percent": 20}, {"percent": 100}]}}, "above the one before"),
        ({"rollout": {**ROLLOUT["rollout"], "steps": [{"percent": 50}]}}, "must reach 100"),
        ({"rollout": {"flag": "new-editor"}}, "value"),
        ({"variations": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}, "control and rollout"),
    ):  # fmt: skip
        with pytest.raises(ExperimentError, match=expected):
            parse_experiment({**ROLLOUT, **change})


def _traffic(ctx: Context, ws: str, start: datetime, n: int, harm: float, seed: int) -> None:
    """`n` people evaluate the flag as it is now; those given the new value show `harm` more
    errors on average; everyone's exposure and errors are ingested."""
    rng = random.Random(seed)
    ev = ctx.flags.payload(ws, "production").evaluator
    msgs: list[dict[str, Any]] = []
    for i in range(n):
        user = f"{seed}-{i}"
        res = ev.evaluate("new-editor", EvalContext(attributes={"id": user}))
        at = start + timedelta(seconds=30 * i)
        props = exposure(res)
        assert props is not None
        msgs.append({"type": "track", "userId": user, "event": "$experiment_viewed", "timestamp": at.isoformat() + "Z",
                     "properties": props, "messageId": f"x{user}"})  # fmt: skip
        rate = 1.0 + (harm if res.value else 0.0)
        for j in range(_poisson(rng, rate)):
            msgs.append({"type": "track", "userId": user, "event": "error_shown",
                         "timestamp": (at + timedelta(minutes=j + 1)).isoformat() + "Z", "messageId": f"e{user}-{j}"})  # fmt: skip
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, pow(2.718281828459045, -lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _rule(ctx: Context, ws: str) -> dict[str, Any]:
    return ctx.flags.get(ws, "new-editor")["environments"]["production"]["rules"][0]  # type: ignore[no-any-return]


def _ws(ctx: Context) -> str:
    ws = ctx.workspaces.create_workspace("Rollouts").id
    ctx.flags.put(ws, "new-editor", FLAG)
    return ws


def test_a_healthy_rollout_ramps_to_everyone(ctx: Context) -> None:
    ws = _ws(ctx)
    ctx.flags.now = lambda: T0  # type: ignore[method-assign]
    ctx.experiments.put(ws, "editor-rollout", ROLLOUT)
    assert _rule(ctx, ws)["weights"] == [0.9, 0.1]
    _traffic(ctx, ws, T0, 600, harm=0.0, seed=1)
    assert ctx.experiments.rollouts.check_all(T0 + timedelta(hours=2)) == 0  # held
    assert ctx.experiments.rollouts.check_all(T0 + timedelta(hours=24)) == 1
    assert _rule(ctx, ws)["weights"] == [0.5, 0.5]
    _traffic(ctx, ws, T0 + timedelta(hours=25), 600, harm=0.0, seed=2)
    assert ctx.experiments.rollouts.check_all(T0 + timedelta(hours=48)) == 1
    assert _rule(ctx, ws) == {"id": "safe-rollout:editor-rollout", "force": True}
    state = ctx.experiments.get(ws, "editor-rollout")["rollout_state"]
    assert state["status"] == "completed" and [e["action"] for e in state["log"]] == [
        "start",
        "ramp",
        "complete",
    ]
    assert ctx.experiments.rollouts.check_all(T0 + timedelta(hours=96)) == 0  # nothing runs
    assert {h["actor"] for h in ctx.flags.history(ws, "new-editor")[:3]} == {"safe-rollout"}


def test_a_harmful_rollout_rolls_back_and_says_why(ctx: Context) -> None:
    ws = _ws(ctx)
    ctx.flags.now = lambda: T0  # type: ignore[method-assign]
    ctx.experiments.put(ws, "editor-rollout", ROLLOUT)
    _traffic(ctx, ws, T0, 1500, harm=0.6, seed=3)  # 60% more errors with the new editor
    assert ctx.experiments.rollouts.check_all(T0 + timedelta(hours=3)) == 1
    assert _rule(ctx, ws) == {"id": "safe-rollout:editor-rollout", "force": False}
    state = ctx.experiments.get(ws, "editor-rollout")["rollout_state"]
    assert state["status"] == "rolled_back" and "Errors shown got worse" in state["reason"]
    assert "10% of traffic" in state["reason"]
    res = ctx.experiments.results(ws, "editor-rollout")
    assert res["verdict"].startswith("Rolled back: guardrail Errors shown got worse")
    lo, hi = res["results"][0]["ci"]
    assert lo < 0.6 < hi  # the always-valid interval covers the harm put in
    # everyone back on the control, by the SDK's evaluation
    ev = ctx.flags.payload(ws, "production").evaluator
    assert not any(
        ev.evaluate("new-editor", EvalContext(attributes={"id": str(u)})).value for u in range(200)
    )
    with pytest.raises(ExperimentError, match="rolled_back already"):
        ctx.experiments.rollouts.roll_back(ws, "editor-rollout", "again")


def test_over_http_start_status_and_rollback_by_hand(server: LiveServer, workspace: Any) -> None:
    c = httpx.Client(base_url=server.url, auth=(workspace.secret_key, ""), timeout=30)
    assert c.put("/api/v1/flags/new-editor", json=FLAG).status_code in (200, 201)
    r = c.post("/api/v1/experiments", json={"key": "editor-rollout", **ROLLOUT})
    assert r.status_code == 201 and r.json()["rollout_state"]["status"] == "running", r.text
    assert (
        c.post("/api/v1/experiments", json={"key": "editor-rollout", **ROLLOUT}).status_code == 409
    )
    flag = c.get("/api/v1/flags/new-editor").json()
    assert flag["environments"]["production"]["rules"][0]["weights"] == [0.9, 0.1]
    r = c.get("/api/v1/experiments/editor-rollout/results").json()
    assert r["rollout"]["status"] == "running" and r["verdict"].startswith("Rolling out (step 1)")
    # a rollout of a value the flag cannot hold, or of a flag that does not exist: refused, nothing written
    bad = {**ROLLOUT, "rollout": {**ROLLOUT["rollout"], "value": "yes"}}
    r = c.put("/api/v1/experiments/other", json=bad)
    assert r.status_code == 422 and "the flag would not accept it" in r.json()["error"]
    r = c.put(
        "/api/v1/experiments/other",
        json={**ROLLOUT, "rollout": {**ROLLOUT["rollout"], "flag": "nope"}},
    )
    assert r.status_code == 422 and "no flag 'nope'" in r.json()["error"]
    assert c.get("/api/v1/experiments/other").status_code == 404
    r = c.post("/api/v1/experiments/editor-rollout/rollback", json={"reason": "support tickets"})
    assert r.status_code == 200 and r.json()["status"] == "rolled_back"
    assert "support tickets" in r.json()["reason"]
    flag = c.get("/api/v1/flags/new-editor").json()
    assert flag["environments"]["production"]["rules"][0] == {
        "id": "safe-rollout:editor-rollout",
        "force": False,
    }
    assert c.post("/api/v1/experiments/editor-rollout/rollback", json={}).status_code == 422


@pytest.mark.browser
def test_set_up_and_roll_back_in_the_dashboard(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """By clicking only: an A/B test (a misspelt event gets its warning), a bad rollout refused
    with its reason and the form kept, a good one started, then rolled back by hand."""
    from tests.test_dashboard import login

    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    ctx.flags.put(ws.id, "new-editor", FLAG)
    ctx.ingest.ingest_sync(ws.id, [{"type": "track", "userId": "u1", "event": "error_shown",
                                    "timestamp": "2026-06-01T09:00:00Z", "messageId": "m1"}], normalize_segment)  # fmt: skip
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.get_by_role("link", name="Experiments").click()
    page.get_by_test_id("setup-key").fill("checklist")
    page.get_by_test_id("setup-variations").fill("classic, guided")
    page.get_by_test_id("setup-primary").fill("activatd")
    page.get_by_test_id("setup-submit").click()
    page.wait_for_url("**/experiments/checklist")
    assert "activatd" in page.get_by_test_id("unknown-events").inner_text()
    got = ctx.experiments.get(ws.id, "checklist")
    assert [v["weight"] for v in got["variations"]] == [0.5, 0.5] and got["primary"][0]["event"][
        "event"
    ] == "activatd"

    page.get_by_role("navigation").get_by_role("link", name="Experiments").click()
    page.get_by_test_id("setup-mode").select_option("rollout")
    assert page.get_by_test_id("setup-variations").is_hidden()
    page.get_by_test_id("setup-key").fill("editor-rollout")
    page.get_by_test_id("setup-steps").fill("10, 50, 100")
    page.get_by_test_id("setup-submit").click()  # no guardrail: refused, the form kept
    assert "needs at least one guardrail" in page.get_by_test_id("setup-error").inner_text()
    assert page.get_by_test_id("setup-steps").input_value() == "10, 50, 100"
    page.get_by_test_id("setup-guardrail").fill("error_shown")
    page.get_by_test_id("setup-submit").click()
    page.wait_for_url("**/experiments/editor-rollout")
    assert page.get_by_test_id("rollout-status").inner_text() == "running"
    assert _rule(ctx, ws.id)["weights"] == [0.9, 0.1]
    page.locator("input[name=reason]").fill("support tickets")
    page.get_by_test_id("rollback").click()
    assert page.get_by_test_id("rollout-status").inner_text() == "rolled back"
    assert "support tickets" in page.get_by_test_id("rollout-reason").inner_text()
    assert _rule(ctx, ws.id)["force"] is False


def test_cli_rollback(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from traction.cli import app
    from traction.settings import Settings

    ctx = Context.open(Settings(data_dir=tmp_path / "data", log_json=False))
    ws = _ws(ctx)
    ctx.experiments.put(ws, "editor-rollout", ROLLOUT)
    ctx.close()
    run = CliRunner()
    d = ["--data-dir", str(tmp_path / "data")]
    r = run.invoke(app, ["experiments", "results", "editor-rollout", *d])
    assert r.exit_code == 0 and "Rollout: running, step 1" in r.output, r.output
    r = run.invoke(app, ["experiments", "rollback", "editor-rollout", "--reason", "latency", *d])
    assert r.exit_code == 0 and "rolled back by cli: latency" in r.output, r.output
    r = run.invoke(app, ["experiments", "rollback", "editor-rollout", *d])
    assert r.exit_code == 2 and "rolled_back already" in r.output


def test_fuzzed_rollouts_are_saved_whole_or_refused_whole(sqlite_ctx: Context) -> None:
    """Any steps, values and controls: either the rollout starts (its rule on the flag, which
    stays a valid flag every SDK evaluates) or a clear error and neither is written."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ctx = sqlite_ctx
    ws = _ws(ctx)
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                               lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=5)  # fmt: skip
    ramps = st.lists(st.floats(0.01, 99.99), min_size=1, max_size=4, unique=True).map(
        lambda ps: [{"percent": p, "hours": 1} for p in [*sorted(ps), 100]]
    )
    anything = st.lists(st.fixed_dictionaries({"percent": st.floats(-5, 120) | st.integers(-5, 120),
                                               "hours": st.floats(-1, 100)}), max_size=5)  # fmt: skip
    steps = ramps | anything
    started: list[str] = []
    n = iter(range(10**6))

    @settings(
        max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        value=st.booleans() | json_values,
        control=st.none() | st.booleans() | json_values,
        steps=steps,
    )
    def run(value: Any, control: Any, steps: list[dict[str, Any]]) -> None:
        key = f"r{next(n)}"
        before = ctx.flags.get(ws, "new-editor")["version"]
        body = {
            **ROLLOUT,
            "rollout": {**ROLLOUT["rollout"], "value": value, "control": control, "steps": steps},
        }
        try:
            ctx.experiments.put(ws, key, body)
        except ExperimentError as e:
            assert str(e)
            assert ctx.flags.get(ws, "new-editor")["version"] == before
            assert key not in {x["key"] for x in ctx.experiments.experiments(ws)}
            return
        started.append(key)
        rule = _rule(ctx, ws)
        assert rule["id"] == f"safe-rollout:{key}" and sum(rule["weights"]) == pytest.approx(1)
        ev = ctx.flags.payload(ws, "production").evaluator
        got = ev.evaluate("new-editor", EvalContext(attributes={"id": "u"})).value
        assert got in (value, False if control is None else control)

    run()
    assert len(started) >= 3  # the valid ones were tried too


def test_the_simulated_rollout_is_caught_and_rolled_back(sqlite_ctx: Context) -> None:
    """The simulator's new report editor triples errors (its true effect); the rollout the
    runner starts on simulated time, checked each simulated day through the real service,
    rolls it back before it reaches everyone, and the interval it reports covers the truth."""
    from traction.simulate.experiments import EDITOR, EDITOR_ROLLOUT_KEY, FLAGS
    from traction.simulate.runner import run_simulation
    from traction.simulate.world import SimulationParams

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Sim").id
    for key, flag in FLAGS.items():
        ctx.flags.put(ws, key, flag)
    run_simulation(ctx, ws, SimulationParams(people=8_000, days=60, seed=5, editor_error_lift=2.0))
    state = ctx.experiments.get(ws, EDITOR_ROLLOUT_KEY)["rollout_state"]
    assert state["status"] == "rolled_back", state
    assert [e["action"] for e in state["log"]][-1] == "rollback"
    assert max(e["percent"] for e in state["log"]) < 100
    row = ctx.experiments.results(ws, EDITOR_ROLLOUT_KEY)["results"][0]
    lo, hi = row["ci"]
    assert lo < 2.0 < hi and row["lift"] > 0.5
    assert _rule_of(ctx, ws, EDITOR) == {"id": f"safe-rollout:{EDITOR_ROLLOUT_KEY}", "force": False}


def _rule_of(ctx: Context, ws: str, flag: str) -> dict[str, Any]:
    return ctx.flags.get(ws, flag)["environments"]["production"]["rules"][0]  # type: ignore[no-any-return]


def test_the_rollout_leaves_the_rest_of_the_simulation_alone(tmp_path: Any) -> None:
    """Its errors come from a random stream of their own: the same seed gives the same people,
    sign-ups, activations and purchases with or without the rollout's flag."""
    from traction.settings import Settings
    from traction.simulate.experiments import EDITOR, FLAGS
    from traction.simulate.runner import run_simulation
    from traction.simulate.world import SimulationParams

    stats = []
    for with_flag in (False, True):
        ctx = Context.open(Settings(data_dir=tmp_path / str(with_flag), log_json=False))
        ws = ctx.workspaces.create_workspace("Sim").id
        if with_flag:
            ctx.flags.put(ws, EDITOR, FLAGS[EDITOR])
        s = run_simulation(ctx, ws, SimulationParams(people=1_500, days=30, seed=9))
        stats.append(
            (s.visitors, s.signups, s.activated, s.paid, ctx.experiments.experiments(ws) != [])
        )
        ctx.close()
    assert stats[0][:4] == stats[1][:4] and (stats[0][4], stats[1][4]) == (False, True)
