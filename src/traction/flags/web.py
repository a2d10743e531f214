"""Dashboard pages for flags: the list with each environment's kill switch, and a flag's page
(its rules per environment with rollout sliders, the JSON editor, the history with diffs)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from traction.flags.domain.flags import FlagError
from traction.flags.service import NotFound
from traction.web.answers import json_document
from traction.web.routes import page_context, render
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])

TEMPLATE = {
    "value_type": "boolean", "default_value": False, "description": "",
    "environments": {"development": {"enabled": True, "rules": [{"force": True}]},
                     "production": {"enabled": True, "rules": [
                         {"force": True, "coverage": 0.1, "hashAttribute": "id"}]}},
}  # fmt: skip


def _admin(page: dict[str, Any]) -> None:
    if page["role"] != "admin":
        raise HTTPException(403, "only a workspace admin can change flags")


@router.get("/w/{ws_id}/flags")
def flags_page(request: Request, ws_id: str) -> HTMLResponse:
    page = page_context(request, ws_id, "flags")
    svc = request.app.state.ctx.flags
    return render(request, "flags.html", **page, flags=svc.flags(ws_id), keys=svc.sdk_keys(ws_id),
                  starter=json.dumps(TEMPLATE, indent=2))  # fmt: skip


@router.post("/w/{ws_id}/flags")
async def flag_create(request: Request, ws_id: str) -> Any:
    page = page_context(request, ws_id, "flags")
    _admin(page)
    form = await request.form()
    key, text = str(form.get("key") or "").strip(), str(form.get("document") or "")
    svc = request.app.state.ctx.flags
    try:
        if key in {f["key"] for f in svc.flags(ws_id)}:
            raise FlagError(f"key: a flag {key!r} exists already")
        svc.put(ws_id, key, _json(text))
    except FlagError as e:
        return render(request, "flags.html", status_code=422, **page, flags=svc.flags(ws_id),
                      keys=svc.sdk_keys(ws_id), starter=text, new_key=key, error=str(e))  # fmt: skip
    return RedirectResponse(f"/w/{ws_id}/flags/{key}", status_code=303)


@router.post("/w/{ws_id}/flags/{key}/toggle")
async def flag_toggle(request: Request, ws_id: str, key: str) -> RedirectResponse:
    _admin(page_context(request, ws_id, "flags"))
    form = await request.form()
    try:
        request.app.state.ctx.flags.set_enabled(ws_id, key, str(form.get("environment") or ""),
                                                form.get("enabled") == "1")  # fmt: skip
    except (NotFound, FlagError) as e:
        raise HTTPException(404 if isinstance(e, NotFound) else 422, str(e)) from None
    back = f"/w/{ws_id}/flags/{key}" if form.get("back") == "flag" else f"/w/{ws_id}/flags"
    return RedirectResponse(back, status_code=303)


@router.get("/w/{ws_id}/flags/{key}")
def flag_page(request: Request, ws_id: str, key: str) -> HTMLResponse:
    page = page_context(request, ws_id, "flags")
    return _flag(request, page, ws_id, key)


def _flag(request: Request, page: dict[str, Any], ws_id: str, key: str, status: int = 200,
          error: str | None = None, text: str | None = None, saved: bool = False) -> HTMLResponse:  # fmt: skip
    svc = request.app.state.ctx.flags
    try:
        flag = svc.get(ws_id, key)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    body = {k: v for k, v in flag.items() if k not in ("key", "version", "updated_at")}
    return render(request, "flag.html", status_code=status, **page, flag=flag, error=error, saved=saved,
                  document=text if text is not None else json.dumps(body, indent=2),
                  history=svc.history(ws_id, key)[:50])  # fmt: skip


@router.post("/w/{ws_id}/flags/{key}")
async def flag_save(request: Request, ws_id: str, key: str) -> HTMLResponse:
    """The JSON editor, or the rollout sliders (`coverage:<env>:<rule index>` in percent)."""
    page = page_context(request, ws_id, "flags")
    _admin(page)
    form = await request.form()
    svc = request.app.state.ctx.flags
    text = str(form.get("document") or "")
    try:
        if "document" in form:
            document = _json(text)
        else:
            flag = svc.get(ws_id, key)
            document = {k: v for k, v in flag.items() if k not in ("key", "version", "updated_at")}
            for name, value in form.items():
                if str(name).startswith("coverage:"):
                    _, env, index = str(name).split(":", 2)
                    rule = document["environments"][env]["rules"][int(index)]
                    rule["coverage"] = round(float(str(value)) / 100, 4)
            text = None  # type: ignore[assignment]
        svc.put(ws_id, key, document)
    except (FlagError, KeyError, IndexError, ValueError) as e:
        msg = (
            str(e)
            if isinstance(e, FlagError)
            else f"the rollout form does not match the flag ({e})"
        )
        return _flag(request, page, ws_id, key, 422, msg, text or None)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    return _flag(request, page, ws_id, key, saved=True)


def _json(text: str) -> Any:
    return json_document(text, FlagError)
