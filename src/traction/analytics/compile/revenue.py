"""The facts the PLG revenue KPIs read (`billing.domain.plg`) -> SQL.

Each query reads only the events it needs by name (sign-ups, trials, PQL events, billing's
subscription changes, checkouts, upgrade triggers), so its cost follows those events, not
the whole log. Activation times come from the activation compiler, over all time.
"""

from __future__ import annotations

from traction.analytics.compile.params import PERSON, RESOLVED_FROM, Params
from traction.analytics.domain.kpis import KPIConfig
from traction.billing.domain.revenue import CHANGE_EVENTS

_ACCOUNT = "COALESCE(e.account_id, json_extract_string(e.properties, '$.account'))"


def _names(p: Params, names: tuple[str, ...]) -> str:
    return f"e.name IN (SELECT unnest({p.add(list(names))}::VARCHAR[]))"


def compile_people(c: KPIConfig, workspace_id: str) -> tuple[str, dict[str, object]]:
    """(person, account, signed_up, trial_started, pql) for everyone with one of those
    events; the account is the first one those events belong to (NULL when none does)."""
    p = Params()
    pql = c.pql_event or c.signup_event
    names = (c.signup_event, c.trial_event, pql)
    sql = (
        f"SELECT {PERSON} AS person, "
        f"arg_min(e.account_id, (e.timestamp, e.seq)) FILTER (WHERE e.account_id IS NOT NULL), "
        f"min(e.timestamp) FILTER (WHERE e.name = {p.add(c.signup_event)}), "
        f"min(e.timestamp) FILTER (WHERE e.name = {p.add(c.trial_event)}), "
        f"min(e.timestamp) FILTER (WHERE e.name = {p.add(pql)}) "
        f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} AND {_names(p, names)} "
        "GROUP BY 1"
    )
    return sql, p.values


def compile_first_accounts(workspace_id: str, people: list[str]) -> tuple[str, dict[str, object]]:
    """The first account of each of `people` (those whose sign-up came before their account)."""
    p = Params()
    sql = (
        f"SELECT {PERSON}, arg_min(e.account_id, (e.timestamp, e.seq)) FROM {RESOLVED_FROM} "
        f"WHERE e.workspace_id = {p.add(workspace_id)} AND e.account_id IS NOT NULL "
        f"AND {PERSON} IN (SELECT unnest({p.add(people)}::VARCHAR[])) GROUP BY 1"
    )
    return sql, p.values


def compile_changes(workspace_id: str) -> tuple[str, dict[str, object]]:
    """Billing's MRR changes: (account, subscription, at, mrr_before, mrr_after, event, person
    when a user made it)."""
    p = Params()
    sql = (
        f"SELECT {_ACCOUNT}, json_extract_string(e.properties, '$.subscription'), e.timestamp, "
        "json_extract_string(e.properties, '$.mrr_before'), "
        "json_extract_string(e.properties, '$.mrr_after'), e.name, "
        f"CASE WHEN e.user_id IS NOT NULL THEN {PERSON} END "
        f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} "
        f"AND {_names(p, CHANGE_EVENTS)} "
        "AND json_extract_string(e.properties, '$.mrr_before') IS NOT NULL "
        "AND json_extract_string(e.properties, '$.mrr_after') IS NOT NULL "
        "ORDER BY e.timestamp, e.seq"
    )
    return sql, p.values


def compile_account_events(
    workspace_id: str, names: tuple[str, ...], with_person: bool
) -> tuple[str, dict[str, object]]:
    """(account, at[, person]) of the named events that belong to an account."""
    p = Params()
    person = f", CASE WHEN e.user_id IS NOT NULL THEN {PERSON} END" if with_person else ""
    sql = (
        f"SELECT {_ACCOUNT} AS account, e.timestamp{person} FROM {RESOLVED_FROM} "
        f"WHERE e.workspace_id = {p.add(workspace_id)} AND {_names(p, names)} "
        f"AND {_ACCOUNT} IS NOT NULL"
    )
    return sql, p.values
