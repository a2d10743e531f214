"""An OpenFeature provider backed by `Flags` (local evaluation):

    from openfeature import api
    from traction.sdk.openfeature import TractionProvider
    api.set_provider(TractionProvider(client_key="tr_sdk_…", host="https://traction.example"))
    client = api.get_client()
    client.get_string_value("onboarding", "classic", EvaluationContext("u42", {"plan": "pro"}))

The targeting key is the `id` attribute (what rules hash on by default); a value of the wrong
type answers the default with `TYPE_MISMATCH`; an unknown flag `FLAG_NOT_FOUND`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from traction.sdk.flags import Flags

T = TypeVar("T")


class TractionProvider(AbstractProvider):
    def __init__(self, flags: Flags | None = None, **kwargs: Any) -> None:
        """`flags`: a `Flags` to use, or the arguments to make one (`client_key`, `host`, ...)."""
        super().__init__()
        self.flags = flags or Flags(**kwargs)

    def get_metadata(self) -> Metadata:
        return Metadata(name="traction")

    def shutdown(self) -> None:
        self.flags.close()

    def _resolve(
        self, key: str, default: T, ctx: EvaluationContext | None, kinds: tuple[type, ...]
    ) -> FlagResolutionDetails[T]:
        attrs: dict[str, Any] = dict(ctx.attributes) if ctx else {}
        if ctx is not None and ctx.targeting_key:
            attrs.setdefault("id", ctx.targeting_key)
        ev = self.flags.evaluate(key, attrs, default)
        if ev.error_code is not None:
            return FlagResolutionDetails(
                default, ErrorCode(ev.error_code), ev.error_message, Reason.ERROR
            )
        value: Any = ev.value
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            return FlagResolutionDetails(default, ErrorCode.TYPE_MISMATCH,
                                         f"flag {key!r} is a {type(ev.value).__name__}", Reason.ERROR)  # fmt: skip
        meta = {"experiment": ev.experiment} if ev.experiment else {}
        return FlagResolutionDetails(
            cast(T, value), reason=Reason(ev.reason), variant=ev.variant, flag_metadata=meta
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, (bool,))

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, (str,))

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, (int,))

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, (float,))

    def resolve_object_details(  # type: ignore[override]
        self, flag_key: str, default_value: Mapping[str, Any] | Sequence[Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Mapping[str, Any] | Sequence[Any]]:  # fmt: skip
        return self._resolve(flag_key, default_value, evaluation_context, (dict, list))
