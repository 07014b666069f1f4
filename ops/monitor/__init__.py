"""Monitoring: the drift check (statistics, windows read from the database), incidents and alerts."""
