"""IMP core engine: ingestion, indexing and retrieval. No front-end code lives here."""
