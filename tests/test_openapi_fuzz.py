"""Schemathesis over the app's own OpenAPI, in process: every JSON operation, generated
inputs (valid and not), with a secret key. Never a 5xx. Derandomized (a fixed seed) with a
small budget per operation, so it fits CI; the hand-written fuzz tests go deeper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from traction.server import create_app
from traction.settings import Settings


def test_no_operation_answers_5xx(tmp_path: Path) -> None:
    app = create_app(
        Settings(data_dir=tmp_path, log_json=False, api_rate_limit="100000/second",
                 ingest_rate_limit="100000/second"),
        run_worker=False,
    )  # fmt: skip
    ws = app.state.ctx.workspaces.create_workspace("Fuzz")
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    failures: list[str] = []
    seen: list[int] = []
    for operation in operations:

        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=auth)
            seen.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        run()
    assert failures == []
    assert len(seen) > 300 and any(c < 300 for c in seen) and any(400 <= c < 500 for c in seen)
