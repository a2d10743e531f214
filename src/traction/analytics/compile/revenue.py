"""The facts the PLG revenue KPIs read (`billing.domain.plg`) -> SQL.

Each query reads only the events it needs by name (sign-ups, trials, PQL events, billing's
subscription changes, checkouts, upgrade triggers), so its cost follows those events, not
the whole log. Activation times come from the activation compiler, over all time.
"""

from __future__ import annotations

from traction.analytics.compile.params import ACCOUNT, PERSON, RESOLVED_FROM, Params
from traction.analytics.compile.peractor import PerActor, Reads
from traction.analytics.domain.kpis import KPIConfig
from traction.billing.domain.revenue import CHANGE_EVENTS


def _names(p: Params, names: tuple[str, ...]) -> str:
    return f"e.name IN (SELECT unnest({p.add(list(names))}::VARCHAR[]))"


def people_query(c: KPIConfig, workspace_id: str) -> PerActor:
    """(person, account, signed_up, trial_started, pql) for everyone with one of those
    events; the account is the first one those events belong to, else the first one any of
    the person's events belongs to (a sign-up before the account existed), else NULL."""
    p = Params()
    pql = c.pql_event or c.signup_event
    names = (c.signup_event, c.trial_event, pql)
    ws = p.add(workspace_id)
    first = "arg_min(e.account_id, (e.timestamp, e.seq)) FILTER (WHERE e.account_id IS NOT NULL)"
    named = (
        f"named AS (SELECT {PERSON} AS actor, {first} AS account, "
        f"min(e.timestamp) FILTER (WHERE e.name = {p.add(c.signup_event)}) AS signed_up, "
        f"min(e.timestamp) FILTER (WHERE e.name = {p.add(c.trial_event)}) AS trial_started, "
        f"min(e.timestamp) FILTER (WHERE e.name = {p.add(pql)}) AS pql "
        f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {ws} AND {_names(p, names)} GROUP BY 1)"
    )
    fallback = (  # only for those whose named events carry no account
        f"fallback AS (SELECT {PERSON} AS actor, {first} AS account FROM {RESOLVED_FROM} "
        f"WHERE e.workspace_id = {ws} AND e.account_id IS NOT NULL "
        f"AND {PERSON} IN (SELECT actor FROM named WHERE account IS NULL) GROUP BY 1)"
    )
    facts = (
        "facts AS (SELECT n.actor, COALESCE(n.account, f.account) AS account, n.signed_up, "
        "n.trial_started, n.pql FROM named n LEFT JOIN fallback f USING (actor))"
    )
    return PerActor(
        (named, fallback, facts), "facts", "SELECT * FROM facts ORDER BY actor", p.values
    )


def changes_query(workspace_id: str) -> PerActor:
    """Billing's MRR changes: (account, subscription, at, mrr_before, mrr_after, event, person
    when a user made it), in the order they happened."""
    p = Params()
    sql = (
        f"facts AS (SELECT {ACCOUNT} AS actor, json_extract_string(e.properties, '$.subscription') AS sub, "
        "e.timestamp AS ts, json_extract_string(e.properties, '$.mrr_before') AS mrr_before, "
        "json_extract_string(e.properties, '$.mrr_after') AS mrr_after, e.name, "
        f"CASE WHEN e.user_id IS NOT NULL THEN {PERSON} END AS person, e.seq "
        f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} "
        f"AND {_names(p, CHANGE_EVENTS)} AND {ACCOUNT} IS NOT NULL "
        "AND json_extract_string(e.properties, '$.mrr_before') IS NOT NULL "
        "AND json_extract_string(e.properties, '$.mrr_after') IS NOT NULL)"
    )
    return PerActor((sql,), "facts", "SELECT actor, sub, ts, mrr_before, mrr_after, name, person "
                    "FROM facts ORDER BY ts, seq", p.values, by="event",
                    reads=Reads(frozenset(CHANGE_EVENTS)))  # fmt: skip


def account_events_query(workspace_id: str, names: tuple[str, ...], with_person: bool) -> PerActor:
    """(account, at[, person]) of the named events that belong to an account."""
    p = Params()
    person = f", CASE WHEN e.user_id IS NOT NULL THEN {PERSON} END AS person" if with_person else ""
    sql = (
        f"facts AS (SELECT {ACCOUNT} AS actor, e.timestamp AS ts{person}, e.seq FROM {RESOLVED_FROM} "
        f"WHERE e.workspace_id = {p.add(workspace_id)} AND {_names(p, names)} "
        f"AND {ACCOUNT} IS NOT NULL)"
    )
    cols = "actor, ts, person" if with_person else "actor, ts"
    return PerActor((sql,), "facts", f"SELECT {cols} FROM facts ORDER BY ts, seq", p.values,
                    by="event", reads=Reads(frozenset(names)))  # fmt: skip
