"""Who an action item's owner is: a name in the minutes matched to exactly one member of the conversation.

Every platform lists its members with the names people go by (full name, display name, handle); an owner
whose name (case-insensitive, or a member's first name) matches exactly one member becomes a mention of
that member. Two members of the same name, or none, leave the name as written: naming nobody beats naming
the wrong person.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.models import Minutes


def owner_names(minutes: Minutes) -> set[str]:
    return {a.owner for a in minutes.action_items if a.owner}


def match_owners(names: Iterable[str], members: Iterable[tuple[str, Iterable[str]]]) -> dict[str, str]:
    """``names`` mapped to the member id each matches alone; ``members`` are (id, names they go by)."""
    people: dict[str, set[str]] = {}
    for member_id, known_as in members:
        keys = set()
        for name in known_as:
            if name:
                keys.update({name, name.split(" ")[0]})
        for key in keys:
            people.setdefault(key.casefold(), set()).add(member_id)
    found = {}
    for name in names:
        ids = people.get(name.casefold(), set())
        if len(ids) == 1:
            found[name] = next(iter(ids))
    return found
