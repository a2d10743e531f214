"""Privacy: erasure, export, consent, retention (the rules in `domain`, the work in `service`)."""
