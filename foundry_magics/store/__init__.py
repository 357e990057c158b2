"""SQLite stores under $FOUNDRY_MAGICS_HOME: the history log and the response cache."""
