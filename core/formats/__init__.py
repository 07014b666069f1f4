"""How IMP writes things down for people and for storage: locations in documents and recordings (p. 4,
12:34), transcripts (JSON, WebVTT, SRT) and minutes (JSON, Markdown).

Front doors (the REST API, the CLI, Slack, Teams) reach core through ``core.engine``, ``core.models``,
``core.errors`` and this package only (tests/unit/test_house.py holds them to it).
"""
