"""The chat layer: what every chat front door (Slack, Teams) shares, so each is a thin adapter over it.

- ``scopes``: who may see what (a channel's scope, a private chat's, company-wide scopes for members);
- ``questions``: answering a question in its conversation, with the thread's history and IMP's own
  earlier answers read back from the answer log; sharing a private answer;
- ``tasks``: long work (index a dropped file, write minutes) from request to posted result, across restarts;
- ``files``: file drops and deletions; ``feedback``: reactions as ratings;
- ``state``: what is kept in the database between requests (message→answer links, tasks, places).

An adapter parses its platform's events, calls these with the platform's pieces (a ``Directory`` of people
and conversations, a ``Replier`` for one conversation, a ``TaskHost`` for long tasks), and renders.
"""
