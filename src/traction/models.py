"""Imports every capability's tables so that Alembic and `create_all` see one metadata."""

from traction.analytics import models as analytics_models
from traction.audit import models as audit_models
from traction.billing import models as billing_models
from traction.catalog import models as catalog_models
from traction.engage import models as engage_models
from traction.experiments import models as experiment_models
from traction.flags import models as flag_models
from traction.identity import models as identity_models
from traction.privacy import models as privacy_models
from traction.segments import models as segment_models
from traction.store import models as store_models
from traction.workspaces import models as workspace_models

__all__ = [
    "analytics_models",
    "audit_models",
    "billing_models",
    "catalog_models",
    "engage_models",
    "experiment_models",
    "flag_models",
    "identity_models",
    "privacy_models",
    "segment_models",
    "store_models",
    "workspace_models",
]
