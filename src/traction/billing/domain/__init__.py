"""Pure billing logic: the catalog's schema, pricing, usage periods, entitlement decisions."""
