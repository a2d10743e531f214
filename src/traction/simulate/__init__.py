"""The SaaS simulator: deterministic demo data, benchmark load and (later) what-if forecasts."""
