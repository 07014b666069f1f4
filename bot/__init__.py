"""Front doors: the FastAPI app (REST, health, metrics) and, later, Slack and Teams."""
