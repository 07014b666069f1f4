"""Relational state (SQLite by default through SQLAlchemy): one shared database and the stores over it."""
