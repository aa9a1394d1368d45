"""One module per CLI subcommand; each defines ``command`` and imports heavy modules lazily."""
