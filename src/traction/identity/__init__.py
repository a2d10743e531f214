"""Identity: persons, distinct ids, merges, accounts (groups) and traits."""
