"""Spec -> SQL, one module per query shape. DuckDB is the reference dialect.

User input never enters the SQL text: event names, property keys (as JSON paths) and
values are all bound parameters. The SQL text depends only on the spec's structure
(how many steps, which operators), so it is also what a cache or a plan can key on.
"""
