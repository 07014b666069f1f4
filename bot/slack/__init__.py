"""Slack front door: bolt app factory, listeners, Block Kit, HTTP routes and the follow-up worker."""
