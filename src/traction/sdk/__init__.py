"""The Python client: `from traction.sdk import Client`."""

from traction.sdk.client import Client
from traction.sdk.entitlements import Check, Entitlements
from traction.sdk.flags import Evaluation, Flags

__all__ = ["Check", "Client", "Entitlements", "Evaluation", "Flags"]
