"""A seeded, agent-based SaaS product, simulated day by day.

Each visitor is a small state machine: anonymous visits (with UTM tags) -> sign-up ->
onboarding steps with drop-off -> activation -> a daily habit that decays -> invites
(virality), trial conversion, churn and reactivation. The product sells the example plan
catalog (`simulate.product`): people meet its limits and locked features, and upgrade with
a chance that depends on which wall they hit; paying accounts add seats, downgrade and
cancel. The output is plain Segment messages, so it exercises the same ingest path as real
traffic; purchases are intents that billing replays (`simulate.billing`).

Same parameters, same seed -> the same messages, byte for byte (message ids included).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from traction.flags.domain.evaluate import Context as EvalContext
from traction.flags.domain.evaluate import Evaluator
from traction.sdk.flags import exposure
from traction.simulate import experiments as sim_exp
from traction.simulate.product import Product, example_catalog

ONBOARDING_STEPS = (
    "project_created",
    "data_source_connected",
    "teammate_invited",
    "report_created",
)
FEATURES = ("dashboards", "alerts", "exports", "sql_editor", "integrations", "api")


@dataclass(frozen=True)
class Channel:
    name: str
    share: float  # of organic arrivals
    signup_rate: float  # chance a visitor of this channel signs up (over all their visits)
    utm: dict[str, str]


DEFAULT_CHANNELS = (
    Channel("organic_search", 0.34, 0.10, {"source": "google", "medium": "organic"}),
    Channel("paid_search", 0.22, 0.09, {"source": "google", "medium": "cpc", "name": "brand-q3"}),
    Channel("social", 0.16, 0.06, {"source": "linkedin", "medium": "social", "name": "launch"}),
    Channel("content", 0.10, 0.08, {"source": "newsletter", "medium": "email", "name": "weekly"}),
    Channel("direct", 0.18, 0.13, {}),
)


@dataclass(frozen=True)
class SimulationParams:
    """Every knob in one place. Rates are per visitor or per day, as named."""

    seed: int = 7
    people: int = 20_000  # organic visitors arriving over the period (invitees come on top)
    days: int = 120
    start: date = date(2026, 7, 1)
    growth: float = 1.5  # arrivals on the last day vs the first (steady growth)
    weekend_factor: float = 0.45
    channels: tuple[Channel, ...] = DEFAULT_CHANNELS
    return_visit_rate: float = 0.35  # a visitor who did not sign up comes back (up to twice)
    # onboarding: chance of each step given the previous ones happened
    step_rates: tuple[float, ...] = (0.80, 0.65, 0.60, 0.70)
    activation_window_days: int = 7
    # habit: P(active on a day) = floor + (start - floor) * exp(-age / tau), then churn hazard
    habit_start_activated: float = 0.75
    habit_floor_activated: float = 0.38
    habit_start_other: float = 0.25
    habit_floor_other: float = 0.02
    habit_tau_days: float = 21.0  # activated users' habit decays slowly...
    habit_tau_other_days: float = 5.0  # ...the others' quickly
    churn_hazard_activated: float = 0.004
    churn_hazard_other: float = 0.02
    reactivation_rate: float = 0.004
    events_per_session: float = 40.0
    extra_session_rate: float = 0.55  # after each session, chance of another that day
    invite_accept_rate: float = 0.6
    invite_signup_rate: float = 0.8
    share_rate: float = 0.015  # per active day: shares a referral link
    share_visit_rate: float = 0.5  # a share brings a visitor
    session_invite_rate: float = 0.012  # per session, after onboarding: invites a teammate
    trial_days: int = 14  # the example catalog's pro trial
    paid_conversion_activated: float = 0.35  # the trial's owner buys as it ends
    paid_conversion_other: float = 0.05
    business_share: float = 0.25  # of purchases, the business plan (else pro)
    # upgrades at a wall, by what the entitlement check answered (once per account, feature
    # and day: the product shows the lock, the person decides)
    upgrade_on_limit: float = 0.10  # limit_reached: projects, seats, API calls on free
    upgrade_on_locked: float = 0.03  # not_in_plan: exports on free, SSO on pro
    project_rate: float = 0.005  # of session actions, creating a project
    sso_rate: float = 0.05  # of settings visits, looking for SSO (business only)
    # the onboarding checklist experiment (simulate/experiments.py): the guided variation
    # raises the chance of the invite step by this much (relative); the A/A test does nothing
    guided_invite_lift: float = 0.25
    downgrade_rate: float = 0.01  # per active day of a business account's owner
    # the safe rollout of a new report editor (simulate/experiments.py), started this many
    # days before the end when the workspace has its flag: each report created shows an error
    # with this chance, raised by `editor_error_lift` (relative) with the new editor. Drawn
    # from a random stream of its own, so the rest of the world is the same with or without.
    rollout_days_before_end: int = 21
    editor_error_rate: float = 0.04
    editor_error_lift: float = 2.0
    # reactions to the journeys' messages (simulate/engage.py), each a chance, drawn from a
    # stream of their own: a nudge to invite, a win-back email, two upgrade prompts
    journeys_days_before_end: int = 21  # when the workspace's journeys are launched
    nudge_invite_rate: float = 0.3
    winback_return_rate: float = 0.0
    prompt_upgrade_a: float = 0.08
    prompt_upgrade_b: float = 0.02


@dataclass
class Visitor:
    key: int
    anon_id: str
    channel: Channel
    first_day: int
    user_id: str | None = None
    account: str | None = None
    invited_to: str | None = None
    signup_day: int = -1
    visits_left: int = 0
    next_visit: int = -1
    steps: dict[str, int] = field(default_factory=dict)  # step -> day done
    activated: bool = False
    churned: bool = False


@dataclass
class SimulationStats:
    visitors: int = 0
    signups: int = 0
    activated: int = 0
    paid: int = 0
    events: int = 0


def day_start(params: SimulationParams, day: int) -> datetime:
    """Midnight (naive UTC) of a simulated day."""
    return datetime.combine(params.start, datetime.min.time()) + timedelta(days=day)


class World:
    def __init__(self, params: SimulationParams) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.visitors: list[Visitor] = []
        self.arrivals: dict[int, list[Visitor]] = {}
        self.returns: dict[int, list[Visitor]] = {}
        self.signed_up: list[Visitor] = []
        self._later: dict[int, list[dict[str, Any]]] = {}  # onboarding steps done on later days
        self.stats = SimulationStats()
        self._accounts = 0
        self.product = Product(example_catalog())
        self.flags = sim_exp.evaluator()
        # the workspace's live flags (the runner refreshes them each simulated day while a
        # rollout runs): None until then, and the editor's errors are not simulated at all
        self.live_flags: Evaluator | None = None
        self._editor_rng = random.Random(params.seed * 7919 + 1)
        self._editor_seen: dict[str, Any] = {}  # person -> the variation last logged
        self._engage_rng = random.Random(params.seed * 7919 + 2)
        self._reactions: dict[int, list[tuple[Visitor, str]]] = {}  # day -> (who, what)
        self.received = 0
        self._users: dict[str, Visitor] = {}
        self._walls: set[tuple[str, str, int]] = set()  # (account, feature, day) shown a lock
        self._day_starts: dict[int, datetime] = {}
        self._schedule_organic()

    def __getstate__(self) -> dict[str, Any]:
        """A world is pickled between its days (`simulate.ahead` hands it from the process that
        simulated the first days to the one that goes on). Flag evaluators hold closures: the
        simulated product's own is rebuilt, and the live one is the runner's to set again."""
        state = self.__dict__.copy()
        del state["flags"]
        state["live_flags"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.flags = sim_exp.evaluator()

    # -- helpers -------------------------------------------------------------------------

    def _uuid(self, rng: random.Random | None = None) -> str:
        """`str(uuid.UUID(int=bits, version=4))`, the same string without the object (a
        few microseconds an event, millions of times)."""
        x = (rng or self.rng).getrandbits(128)
        x = (x & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
        h = f"{x:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _ts(self, day: int, hour: float) -> str:
        hour = min(hour, 23.9999)  # never spill into tomorrow: days are emitted in order
        start = self._day_starts.get(day)
        if start is None:
            # naive UTC + "Z": the same text as an aware time's "+00:00" replaced, faster
            start = self._day_starts[day] = day_start(self.p, day)
        return (start + timedelta(hours=hour)).isoformat() + "Z"

    def _dt(self, day: int, hour: float) -> datetime:
        """The same moment as `_ts`, as billing's naive UTC."""
        return datetime.fromisoformat(self._ts(day, hour)[:-1])

    def time(self, day: int, hour: float) -> datetime:
        """A simulated moment (naive UTC), for what runs on the simulation's clock."""
        return self._dt(day, hour)

    def _weekday_factor(self, day: int) -> float:
        return self.p.weekend_factor if (self.p.start + timedelta(days=day)).weekday() >= 5 else 1.0

    def _new_visitor(self, channel: Channel, day: int) -> Visitor:
        v = Visitor(len(self.visitors), self._uuid(), channel, day)
        v.visits_left = 2 if self.rng.random() < self.p.return_visit_rate else 0
        self.visitors.append(v)
        self.arrivals.setdefault(day, []).append(v)
        self.stats.visitors += 1
        return v

    def _schedule_organic(self) -> None:
        p = self.p
        weights = [
            (1 + (p.growth - 1) * d / max(1, p.days - 1)) * self._weekday_factor(d)
            for d in range(p.days)
        ]
        days = self.rng.choices(range(p.days), weights=weights, k=p.people)
        chans = self.rng.choices(p.channels, weights=[c.share for c in p.channels], k=p.people)
        for d, c in sorted(zip(days, chans, strict=True), key=lambda x: x[0]):
            self._new_visitor(c, d)

    # -- one day -------------------------------------------------------------------------

    def day(self, d: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for v in self.arrivals.pop(d, []) + self.returns.pop(d, []):
            self._visit(v, d, out)
        for v in self.signed_up:
            if v.signup_day < d:
                self._live(v, d, out)
        out.extend(self._later.pop(d, []))
        for v, what in self._reactions.pop(d, []):
            out.extend(self._react(v, d, what))
        out.sort(key=lambda m: m["timestamp"])
        self.stats.events += len(out)
        return out

    def _msg(self, v: Visitor, kind: str, d: int, hour: float, _rng: random.Random | None = None,
             **fields: Any) -> dict[str, Any]:  # fmt: skip
        m: dict[str, Any] = {
            "type": kind,
            "messageId": self._uuid(_rng),
            "timestamp": self._ts(d, hour),
        }
        if v.user_id:
            m["userId"] = v.user_id
        m["anonymousId"] = v.anon_id
        m.update(fields)
        return m

    def _track(self, v: Visitor, d: int, hour: float, name: str, **props: Any) -> dict[str, Any]:
        return self._msg(v, "track", d, hour, event=name, properties=props)

    def _visit(self, v: Visitor, d: int, out: list[dict[str, Any]]) -> None:
        rng = self.rng
        hour = rng.uniform(6, 22)
        ctx: dict[str, Any] = {
            "userAgent": "Mozilla/5.0 (Simulated)",
            "ip": f"203.0.113.{v.key % 250}",
        }
        first = d == v.first_day
        if first and v.channel.utm:
            ctx["campaign"] = dict(v.channel.utm)
        if first and v.channel.name in ("invite", "referral"):
            ctx["referrer"] = {"type": v.channel.name}
        pages = ["/", "/features", "/pricing", "/docs", "/customers"]
        for i in range(rng.randint(1, 4)):
            path = pages[0] if i == 0 else rng.choice(pages[1:])
            page_ctx = {**ctx, "page": {"path": path, "url": f"https://example.app{path}"}}
            out.append(
                self._msg(
                    v,
                    "page",
                    d,
                    hour + i * 0.02,
                    name=path.strip("/") or "home",
                    properties={"path": path},
                    context=page_ctx,
                )
            )
        chance = v.channel.signup_rate
        if v.visits_left and not first:
            chance *= 1.5
        if rng.random() < chance / (1 + v.visits_left * 0.5) or (
            v.invited_to and rng.random() < self.p.invite_signup_rate
        ):
            self._signup(v, d, hour + 0.1, out)
        elif v.visits_left > 0:
            v.visits_left -= 1
            self.returns.setdefault(d + rng.randint(1, 7), []).append(v)

    def _signup(self, v: Visitor, d: int, hour: float, out: list[dict[str, Any]]) -> None:
        rng = self.rng
        v.user_id = f"u_{v.key:07d}"
        self._users[v.user_id] = v
        v.signup_day = d
        self.signed_up.append(v)
        self.stats.signups += 1
        if v.invited_to:
            v.account = v.invited_to
            self.product.joined(v.account, self._dt(d, hour))
        else:
            self._accounts += 1
            v.account = f"acct_{self._accounts:06d}"
            # the account starts a trial (billing records `trial_started` on its owner)
            self.product.open(v.account, v.user_id, self._dt(d, hour + 0.03))
        email = f"user{v.key}@{v.account.replace('_', '')}.example"
        traits = {
            "email": email,
            "name": f"User {v.key}",
            "role": rng.choice(["engineer", "pm", "growth", "founder", "analyst"]),
        }
        out.append(self._msg(v, "identify", d, hour, traits=traits))
        out.append(
            self._track(
                v,
                d,
                hour + 0.01,
                "signed_up",
                method=rng.choice(["email", "google", "github"]),
                channel=v.channel.name,
                invited=v.invited_to is not None,
            )
        )
        out.append(
            self._msg(
                v,
                "group",
                d,
                hour + 0.005,  # the account exists as sign-up completes: signed_up belongs to it
                groupId=v.account,
                traits={"name": f"Company {v.account[-6:]}", "plan": "trial"}
                if not v.invited_to
                else {},
            )
        )
        # the experiments, bucketed as the SDK does it, each exposure logged as the SDK logs it
        guided = False
        for key in (sim_exp.ONBOARDING, sim_exp.AA):
            res = sim_exp.evaluate(self.flags, key, v.user_id)
            seen = exposure(res)
            if seen is not None:
                out.append(self._track(v, d, hour + 0.02, "$experiment_viewed", **seen))
                guided = guided or (key == sim_exp.ONBOARDING and res.value == "guided")
        # onboarding: each step after the previous one, some on later days
        t_day, t_hour = d, hour + 0.05
        for step, rate in zip(ONBOARDING_STEPS, self.p.step_rates, strict=True):
            if guided and step == "teammate_invited":  # the checklist's true effect
                rate = min(1.0, rate * (1 + self.p.guided_invite_lift))
            if rng.random() >= rate:
                break
            gap = rng.expovariate(1 / 20.0)  # hours; a long tail into later days
            t_hour += gap
            while t_hour >= 24:
                t_hour -= 24
                t_day += 1
            if t_day >= self.p.days:
                break
            v.steps[step] = t_day
            out_day = self._later.setdefault(t_day, []) if t_day > d else out
            if step == "teammate_invited":
                out_day.extend(self._invite(v, t_day, t_hour, onboarding=True))
            else:
                out_day.append(self._track(v, t_day, t_hour, step, onboarding=True))
                if step == "project_created":
                    self.product.used(v.account, "projects", 1, self._dt(t_day, t_hour))
        done = v.steps
        window = self.p.activation_window_days
        v.activated = all(
            s in done and done[s] - d <= window for s in ("project_created", "teammate_invited")
        )
        if v.activated:
            self.stats.activated += 1

    def _invite(
        self, v: Visitor, d: int, hour: float, onboarding: bool = False
    ) -> list[dict[str, Any]]:
        """An invite, if the plan has a seat for one more (or the inviter buys one)."""
        assert v.account is not None
        walls, open_ = self._wall(v, d, hour, "seats", 1)
        if not open_:
            return walls
        role = self.rng.choice(["member", "admin"])
        msg = self._track(v, d, hour, "teammate_invited", role=role, onboarding=onboarding)
        if self.rng.random() < self.p.invite_accept_rate:
            arrive = d + self.rng.randint(1, 3)  # today's arrivals are already processed
            if arrive < self.p.days:
                inv = self._new_visitor(
                    Channel("invite", 0, 0.0, {"source": "invite", "medium": "email"}), arrive
                )
                inv.invited_to = v.account
        return [*walls, msg]

    def _wall(self, v: Visitor, d: int, hour: float, feature: str, requested: int = 0
              ) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
        """Asks the entitlement check: the messages, and whether the way is open. A "no"
        shows the lock (`$feature_locked`, as billing records it); the first of the day on an
        account may make the person upgrade, after which the check says yes."""
        assert v.account is not None and v.user_id is not None
        now = self._dt(d, hour)
        decision = self.product.check(v.account, feature, now, requested)
        if decision.granted:
            return [], True
        key = (v.account, feature, d)
        if key in self._walls:
            return [self._track(v, d, hour, "$feature_locked", feature=feature,
                                reason=decision.reason, account=v.account)], False  # fmt: skip
        self._walls.add(key)
        plan = self.product.plan(v.account, now).key
        out = [self._track(v, d, hour, "$feature_locked", feature=feature, reason=decision.reason,
                           plan=plan, account=v.account)]  # fmt: skip
        rate = (
            self.p.upgrade_on_limit
            if decision.reason == "limit_reached"
            else self.p.upgrade_on_locked
        )
        options = [o["plan"] for o in decision.upgrade_options]
        if options and self.rng.random() < rate:
            target = (
                options[-1]
                if len(options) > 1 and self.rng.random() < self.p.business_share
                else options[0]
            )
            out += self._buy(v, d, hour + 0.01, target)
            after = self._dt(d, hour + 0.01)
            return out, self.product.check(v.account, feature, after, requested).granted
        return out, False

    def _live(self, v: Visitor, d: int, out: list[dict[str, Any]]) -> None:
        p, rng = self.p, self.rng
        age = d - v.signup_day
        if v.churned:
            if rng.random() < p.reactivation_rate:
                v.churned = False
                out.append(self._track(v, d, rng.uniform(8, 20), "reactivated", days_away=age))
            return
        owner = (
            v.account is not None
            and self.product.accounts.get(v.account) is not None
            and (self.product.accounts[v.account].owner == v.user_id)
        )
        if owner and age == p.trial_days - 1:  # the trial ends tomorrow: buy, or go free
            self._end_trial(v, d, out)
        hazard = p.churn_hazard_activated if v.activated else p.churn_hazard_other
        if rng.random() < hazard:
            v.churned = True
            if owner:  # the owner leaves: the account cancels at its period's end
                assert v.account is not None
                self.product.cancel(v.account, v.user_id or "", self._dt(d, rng.uniform(8, 20)))
            return
        start, floor = (
            (p.habit_start_activated, p.habit_floor_activated)
            if v.activated
            else (p.habit_start_other, p.habit_floor_other)
        )
        tau = p.habit_tau_days if v.activated else p.habit_tau_other_days
        if rng.random() >= (floor + (start - floor) * math.exp(-age / tau)) * self._weekday_factor(
            d
        ):
            return
        hour = rng.uniform(7, 12)
        if owner and rng.random() < p.downgrade_rate:
            assert v.account is not None
            if self.product.plan(v.account, self._dt(d, hour)).key == "business":
                self.product.downgrade(v.account, v.user_id or "", "pro", self._dt(d, hour))
        while hour < 23:
            self._session(v, d, hour, out)
            if rng.random() >= p.extra_session_rate:
                break
            hour += rng.uniform(1.0, 4.0)

    def _session(self, v: Visitor, d: int, hour: float, out: list[dict[str, Any]]) -> None:
        p, rng = self.p, self.rng
        n = max(2, int(rng.expovariate(1 / p.events_per_session)))
        out.append(self._track(v, d, hour, "session_started"))
        t = hour
        for _ in range(n):
            t += rng.uniform(0.005, 0.03)
            if t >= 24:
                break  # the session ends at midnight
            r = rng.random()
            if r < 0.35:
                out.append(
                    self._track(v, d, t, "dashboard_viewed", dashboard_id=rng.randint(1, 20))
                )
            elif r < 0.60 - p.project_rate:
                feature = rng.choices(FEATURES, weights=(30, 15, 12, 10, 8, 5))[0]
                out.extend(self._use(v, d, t, feature))
            elif r < 0.60:
                assert v.account is not None
                walls, open_ = self._wall(v, d, t, "projects", 1)
                out.extend(walls)
                if open_:
                    out.append(self._track(v, d, t + 0.001, "project_created", onboarding=False))
                    self.product.used(v.account, "projects", 1, self._dt(d, t + 0.001))
            elif r < 0.80:
                out.append(self._track(v, d, t, "report_viewed", report_id=rng.randint(1, 200)))
            elif r < 0.92:
                out.append(self._track(v, d, t, "report_created", onboarding=False))
                if self.live_flags is not None:
                    out.extend(self._report_editor(v, d, t))
            elif r < 0.97:
                out.append(
                    self._msg(
                        v, "page", d, t, name="settings", properties={"path": "/app/settings"}
                    )
                )
                if rng.random() < p.sso_rate:  # an admin looks for single sign-on
                    out.extend(self._wall(v, d, t + 0.001, "sso")[0])
                    # the SSO panel is behind a plan-gated flag (paying accounts only); seen
                    # after a purchase made at the wall (at t + 0.011)
                    state = self.product.at(v.account, self._dt(d, t)) if v.account else None
                    attrs = (
                        {"plan": state.plan, "subscription_status": state.status} if state else {}
                    )
                    if sim_exp.evaluate(self.flags, "sso-settings", v.user_id or "", **attrs).value:
                        out.append(self._msg(v, "page", d, t + 0.012, name="sso settings",
                                             properties={"path": "/app/settings/sso"}))  # fmt: skip
            else:
                out.append(self._track(v, d, t, "search_performed", results=rng.randint(0, 40)))
        if rng.random() < p.share_rate:
            out.append(
                self._track(
                    v,
                    d,
                    hour + 0.5,
                    "referral_link_shared",
                    channel=rng.choice(["email", "slack", "x", "linkedin"]),
                )
            )
            if rng.random() < p.share_visit_rate and d + 1 < p.days:
                self._new_visitor(
                    Channel("referral", 0, 0.2, {"source": "referral", "medium": "referral"}), d + 1
                )
        if rng.random() < p.session_invite_rate and v.account:
            out.extend(self._invite(v, d, hour + 0.6))

    def receive(self, user_id: str, journey: str, step: str, day: int) -> None:
        """A journey's message reached a simulated person on `day`: with the chance its
        parameter says, they act on it the next day."""
        from traction.simulate.engage import EFFECTS

        self.received += 1
        effect = EFFECTS.get(f"{journey}.{step}")
        v = self._users.get(user_id)
        if effect is None or v is None or day + 1 >= self.p.days:
            return
        what, param = effect
        if self._engage_rng.random() < getattr(self.p, param):
            self._reactions.setdefault(day + 1, []).append((v, what))

    def _react(self, v: Visitor, d: int, what: str) -> list[dict[str, Any]]:
        hour = self._engage_rng.uniform(9, 18)
        if what == "invite" and v.account is not None and "teammate_invited" not in v.steps:
            v.steps["teammate_invited"] = d
            done = v.steps
            if (
                not v.activated
                and "project_created" in done
                and d - v.signup_day <= self.p.activation_window_days
            ):
                v.activated = True
                self.stats.activated += 1
            return [self._msg(v, "track", d, hour, self._engage_rng, event="teammate_invited",
                              properties={"role": "member", "onboarding": True, "nudged": True})]  # fmt: skip
        if what == "return" and v.churned:
            v.churned = False
            return [
                self._msg(
                    v, "track", d, hour, self._engage_rng, event="session_started", properties={}
                )
            ]
        if what == "upgrade" and v.account is not None and v.user_id is not None:
            state = self.product.at(v.account, self._dt(d, hour))
            if state is None or state.plan == "free":
                return self._buy(v, d, hour, "pro")
        return []

    def _report_editor(self, v: Visitor, d: int, t: float) -> list[dict[str, Any]]:
        """The report editor behind the rollout's flag: an exposure logged when the person's
        variation is new to them (as the SDK does per session), an error with the editor's
        chance."""
        assert self.live_flags is not None and v.user_id is not None
        res = self.live_flags.evaluate(sim_exp.EDITOR, EvalContext(attributes={"id": v.user_id}))
        out = []
        seen = exposure(res)
        if seen is not None and self._editor_seen.get(v.user_id) != seen["variation_id"]:
            self._editor_seen[v.user_id] = seen["variation_id"]
            out.append(self._msg(v, "track", d, t - 0.0005, self._editor_rng,
                                 event="$experiment_viewed", properties=seen))  # fmt: skip
        rate = self.p.editor_error_rate * (1 + self.p.editor_error_lift if res.value else 1)
        if self._editor_rng.random() < rate:
            out.append(self._msg(v, "track", d, t + 0.0005, self._editor_rng,
                                 event="error_shown", properties={"where": "report_editor"}))  # fmt: skip
        return out

    def _use(self, v: Visitor, d: int, t: float, feature: str) -> list[dict[str, Any]]:
        """A feature used: exports are a plan feature, the API a metered one."""
        assert v.account is not None
        if feature == "exports":
            walls, open_ = self._wall(v, d, t, "exports")
            if not open_:
                return walls
            return [*walls, self._track(v, d, t + 0.001, "feature_used", feature=feature)]
        if feature == "api":
            calls = self.rng.randint(20, 300)
            walls, open_ = self._wall(v, d, t, "api_calls", calls)
            if not open_:
                return walls
            self.product.used(v.account, "api_calls", calls, self._dt(d, t + 0.001))
            return [*walls, self._track(v, d, t + 0.001, "api_called", calls=calls)]
        return [self._track(v, d, t, "feature_used", feature=feature)]

    def _buy(self, v: Visitor, d: int, hour: float, plan: str) -> list[dict[str, Any]]:
        """A checkout by `v` (billing records the purchase on them: self-serve)."""
        assert v.account is not None and v.user_id is not None
        now = self._dt(d, hour)
        first = not self.product.paying(v.account, now)
        if not self.product.buy(v.account, v.user_id, plan, now):
            return []
        self.stats.paid += first
        return [self._msg(v, "group", d, hour + 0.001, groupId=v.account, traits={"plan": plan})]

    def _end_trial(self, v: Visitor, d: int, out: list[dict[str, Any]]) -> None:
        assert v.account is not None
        hour = self.rng.uniform(8, 18)
        if self.product.at(v.account, self._dt(d, hour)).status != "trialing":
            return  # bought already, at a wall
        rate = self.p.paid_conversion_activated if v.activated else self.p.paid_conversion_other
        if self.rng.random() < rate:
            plan = "business" if self.rng.random() < self.p.business_share else "pro"
            out.extend(self._buy(v, d, hour, plan))

    def run(self) -> Iterator[list[dict[str, Any]]]:
        """Yields each day's messages, in time order within the day."""
        for d in range(self.p.days):
            yield self.day(d)
