"""Provider translation: one module per (client format, upstream format) pair."""
