"""The dashboard: server-rendered pages (Jinja2 + htmx), login, workspace switcher."""
