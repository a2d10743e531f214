"""The Python client: `from traction.sdk import Client`."""

from traction.sdk.client import Client

__all__ = ["Client"]
