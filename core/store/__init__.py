"""Relational state (SQLite by default through SQLAlchemy): the document registry and chunk texts."""
