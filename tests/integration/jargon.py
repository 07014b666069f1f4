"""Office-jargon questions against plain-worded project passages: training data whose lesson is learnable.

"Who is the DRI for X?" has to find "Y leads the X"; the hard negative is another passage
about the same project. Training sees eight projects (``TRAIN``); ``HELD_OUT`` asks the same
kinds of question about four others, so what a model learns (jargon to wording) is what the
held-out ranking needs. ``SHUFFLED`` pairs each training question with a wrong passage (its own is the negative).
"""

from __future__ import annotations

import random

from training.types import Pair

PROJECTS = [
    ("Rotterdam pilot", "Dana Ortiz", "420,000 EUR", "14 March", "Rotterdam", "late delivery of the charging docks"),
    ("Atlas migration", "Priya Raman", "1.2 million USD", "30 June", "Austin", "data loss while copying the archive"),
    ("Harbor rover", "Tom Becker", "310,000 EUR", "2 September", "Hamburg", "battery cells overheating in summer"),
    ("Lighthouse portal", "Mei Chen", "95,000 USD", "11 November", "Toronto", "the identity provider contract expiring"),
    ("Falcon firmware", "Jonas Weber", "260,000 EUR", "5 May", "Munich", "a shortage of radio modules"),
    ("Orchard analytics", "Sara Lind", "150,000 USD", "21 January", "Stockholm", "poor quality of the sales data"),
    ("Beacon payroll", "Ahmed Khan", "80,000 GBP", "1 April", "Manchester", "changes to the tax rules"),
    ("Summit warehouse", "Lucia Rossi", "2.4 million EUR", "18 October", "Milan", "the crane supplier going bankrupt"),
    ("Delta onboarding", "Kofi Mensah", "60,000 USD", "9 February", "Accra", "new hires skipping the safety course"),
    ("Nimbus backup", "Elena Petrova", "340,000 EUR", "27 July", "Warsaw", "the tape library running out of space"),
    ("Cobalt scheduler", "Ravi Iyer", "120,000 USD", "3 December", "Bangalore", "the old calendar API being switched off"),
    ("Aurora kiosk", "Hanna Berg", "210,000 EUR", "16 August", "Oslo", "touch screens failing in the cold"),
]
QUESTIONS = {
    "lead": "Who is the DRI for {p}?",
    "budget": "What's the burn cap on {p}?",
    "date": "When does {p} go GA?",
    "site": "Which hub hosts {p}?",
    "risk": "What's the biggest red flag on {p}?",
}
PASSAGES = {
    "lead": "{person} leads the {p} and answers for its delivery to the board.",
    "budget": "The {p} may spend at most {amount} this financial year.",
    "date": "The {p} is due to be released to all customers on {date}.",
    "site": "Engineers working on the {p} sit in the {city} office.",
    "risk": "The main threat to the {p} is {risk}.",
}


def _pairs(projects) -> list[Pair]:
    pairs = []
    for p, person, amount, date, city, risk in projects:
        text = {k: v.format(p=p, person=person, amount=amount, date=date, city=city, risk=risk)
                for k, v in PASSAGES.items()}
        kinds = list(QUESTIONS)
        for i, kind in enumerate(kinds):
            negative = text[kinds[(i + 1) % len(kinds)]]  # same project, another question's answer
            pairs.append(Pair(query=QUESTIONS[kind].format(p=p), positive=text[kind], negatives=(negative,)))
    return pairs


TRAIN = _pairs(PROJECTS[:8])  # 40 pairs
HELD_OUT = _pairs(PROJECTS[8:])  # 20 pairs about projects training never saw


def _shuffled(pairs: list[Pair]) -> list[Pair]:
    """Each question with another pair's passage as its positive, and its own passage as the negative."""
    passages = [p.positive for p in pairs]
    random.Random(7).shuffle(passages)
    return [Pair(p.query, passage, (p.positive,)) for p, passage in zip(pairs, passages, strict=True)
            if passage != p.positive]


SHUFFLED = _shuffled(TRAIN)
