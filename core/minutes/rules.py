"""Phrase rules for extractive minutes: decisions, action items, due dates and open questions.

Pure functions over sentences and turns, no models. Each finder returns items whose
evidence is the matched sentence copied verbatim from its turn, so nothing is invented.
Matching runs on a copy with typographic apostrophes made plain (same length, same offsets).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from core.minutes.base import evidence
from core.minutes.dates import find_due  # noqa: F401 - find_due is part of the rules API
from core.models import ActionItem, Decision, Meeting, OpenQuestion, Turn
from core.textutil import clean, content_words, split_sentences
from core.textutil import plain as _plain

# ---------------------------------------------------------------- sentences

MAX_SENTENCE_CHARS = 400  # an unpunctuated monologue is read in pieces: short quotes, bounded regex work


def sentences_of(text: str) -> list[str]:
    """The sentences of a turn, each a verbatim piece of it, long ones cut at a space.

    A spoken cue the recogniser wrote as a sentence of its own ("Decision. We keep ...",
    "Action item for Jonas. Order ...") is read together with the sentence after it.
    """
    spans: list[list[int]] = []
    at = 0
    for s in split_sentences(text):
        start = text.find(s, at)
        at = start + len(s)
        if spans and is_cue(text[spans[-1][0]:spans[-1][1]]):
            spans[-1][1] = at
        else:
            spans.append([start, at])
    out = []
    for start, end in spans:
        s = text[start:end]
        while len(s) > MAX_SENTENCE_CHARS:
            cut = s.rfind(" ", MAX_SENTENCE_CHARS // 2, MAX_SENTENCE_CHARS)
            cut = cut if cut > 0 else MAX_SENTENCE_CHARS
            out.append(s[:cut].rstrip())
            s = s[cut:].lstrip()
        if s:
            out.append(s)
    return out


def _sentences(meeting: Meeting) -> Iterator[tuple[int, Turn, list[str], tuple[Turn, str] | None]]:
    """Each turn's sentences, and what a cue that ends the turn introduces.

    A recogniser often makes a spoken cue ("Decision.", "Action item for Jonas.") a segment of its
    own; when the same speaker goes on in the next turn, its first sentence is what the cue
    introduces: it comes as (that turn, that sentence) and is not read again in its own turn.
    """
    turns = meeting.turns
    sentences = sentences_of(turns[0].text) if turns else []
    for pos, turn in enumerate(turns):
        nxt = turns[pos + 1] if pos + 1 < len(turns) else None
        after = sentences_of(nxt.text) if nxt is not None else []
        follow = None
        if sentences and after and nxt.speaker == turn.speaker and is_cue(sentences[-1]):
            follow, after = (nxt, after[0]), after[1:]
        yield pos, turn, sentences, follow
        sentences = after


def _statements(turn: Turn, sentences: list[str], follow: tuple[Turn, str] | None
                ) -> Iterator[tuple[str, str, tuple[tuple[Turn, str], ...]]]:
    """(sentence, what the rules read, where it was said) for each sentence of a turn."""
    for i, s in enumerate(sentences):
        if follow is not None and i == len(sentences) - 1:
            yield s, f"{s} {follow[1]}", ((turn, s), follow)
        else:
            yield s, s, ((turn, s),)


def _has_content(text: str, n: int = 2) -> bool:
    return len(content_words(text)) >= n


# ---------------------------------------------------------------- spoken cues

# A cue ("Decision: ...", "Action item for Jonas: ...") reaches us with whatever the recogniser wrote
# for the pause after it: a colon, a comma, a dash, a period (then the cue is a sentence of its own,
# read with the next one: see sentences_of and _sentences), or nothing at all.
_SEP = r"[:;,.!\u2013\u2014-]"
_SEPS = rf"\s*+(?:{_SEP}\s*+)++"  # possessive: a long run of them is one pass
_DECISION_NOUN = r"(?i:(?:the\s+|our\s+)?(?:final\s+)?(?:decision|resolution|conclusion))"
_ACTION_CUE = r"(?i:(?:an?\s+)?(?:action\s+(?:item|point)s?|to-?dos?|to\s+do))"
_NAME = r"\[?[A-Z][A-Za-z0-9]++\]?(?:\s+[A-Z][a-z]+)?"  # possessive: a name never gives letters back
_CUE = re.compile(rf"^\W*+(?:{_DECISION_NOUN}|{_ACTION_CUE}(?:\s+(?i:for)\s+{_NAME})?)\s*+(?:{_SEP}\s*+)*+$")


def is_cue(sentence: str) -> bool:
    """Whether a sentence is only a spoken cue ("Decision.", "Action item for Jonas."), its content to follow."""
    return bool(_CUE.match(_plain(sentence)))


# ---------------------------------------------------------------- decisions

# A decision noun takes any pause ("Decision, we ...", "Decision. We ..."), or none before "we"; a verb
# takes only a colon or a dash ("Agreed, but ..." is not a decision).
_DECISION_PREFIX = re.compile(rf"""^\W*+(?:{_DECISION_NOUN}(?:{_SEPS}|\s++(?=(?i:we)\b))
   |(?i:(?:the\s+)?(?:final\s+)?(?:decided|resolved|agreed))\s*+(?:[:\u2013\u2014-]\s*+)++)(?P<rest>.+)$""", re.X)
_DECISION = re.compile(r"""(?ix)
   \bwe(?:'ve|\s+have)?\s+(?:all\s+|just\s+|now\s+|finally\s+|already\s+)?
      (?:decided|agreed|concluded|settled\s+on|chose|chosen|opted)\b
 | \b(?:it|this|that)(?:'s|\s+is|\s+was|\s+has)\s+(?:been\s+)?(?:decided|agreed|settled)\b
 | \blet'?s\s+go\s+(?:with|for|ahead\s+with)\b
 | \bwe(?:'ll|\s+will|\s+are\s+going\s+to|'re\s+going\s+to|'re\s+gonna|\s+shall)\s+
      (?:go\s+with|go\s+for|use|adopt|stick\s+with|switch\s+to|move\s+forward\s+with|proceed\s+with)\b
 | \bthe\s+(?:plan|decision|consensus|conclusion|agreement)\s+is\s+(?:to|that)\b
 | \bfinal(?:ly)?\b.{0,60}?\b(?:decided|decision|agreed)\b""")
_NOT_YET = re.compile(r"(?i)\b(?:if|whether|unless|once|until|before|can|could|should|must|need\s+to|needs\s+to|"
                      r"have\s+to|has\s+to|yet|not|n't|never|don't\s+know|why)\b")
_HEDGES = frozenset("actual realli basic mayb probabl okay ok sure right yeah mention like well kind sort "
                    "um uh ehm".split())  # stems
_PROPOSAL = re.compile(r"""(?ix)^(?:(?:so|okay|ok|then|well|maybe|and)[\s,]+)*
   (?:(?:should|shall|could|can)\s+we|how\s+about|what\s+about|why\s+don't\s+we
    |i\s+(?:would\s+)?(?:propose|suggest)(?:\s+that)?(?:\s+we)?|my\s+(?:proposal|suggestion)\s+is(?:\s+to|\s+that)?
    |let's|(?:maybe\s+)?we\s+(?:could|should))\s+(?P<rest>.+)$""")
_AGREEMENT = re.compile(r"""(?ix)^(?:(?:yes|yeah|yep|okay|ok|sure|right|fine|good|great|perfect)[\s,.!]+)*
   (?:agreed|i\s+agree|we\s+agree|sounds\s+(?:good|great|fine)|let's\s+do\s+(?:that|it|this)|deal|that\s+works
    |works\s+for\s+me|fine\s+(?:by|with)\s+me|makes\s+sense|absolutely|good\s+idea|great\s+idea)\b""")


def decision_text(sentence: str) -> str | None:
    """The decision a sentence states ("We decided to ..."), cleaned; None when it states none."""
    plain = _plain(sentence).strip()
    if plain.endswith("?"):
        return None
    prefix = _DECISION_PREFIX.match(plain)
    if prefix:
        text = clean(prefix.group("rest"))
        return text if _has_content(text) else None
    m = _DECISION.search(plain)
    if not m or _NOT_YET.search(plain[:m.start()]) or re.match(r"(?i)\s*yet\b", plain[m.end():]):
        return None
    if m.group().lower().startswith("final") and re.search(r"(?i)\b(?:not|n't|yet|pending|open)\b",
                                                           plain[m.start():m.end() + 30]):
        return None
    if not content_words(plain[m.end():]) - _HEDGES:  # "We agreed that actually the."
        return None
    text = clean(plain)
    return text if _has_content(text) else None


def proposal_text(sentence: str) -> str | None:
    """What a proposal proposes ("Should we move the launch to May?" -> "Move the launch to May")."""
    m = _PROPOSAL.match(clean(sentence))
    if not m:
        return None
    text = clean(m.group("rest").rstrip(" ?.!"))
    return text if _has_content(text) else None


def is_agreement(reply: str) -> bool:
    text = clean(reply)
    return len(text.split()) <= 10 and bool(_AGREEMENT.match(text))


def find_decisions(meeting: Meeting) -> list[Decision]:
    """Decisions stated outright, and proposals another speaker agreed to in the next turn."""
    out: list[Decision] = []
    turns = meeting.turns
    for pos, turn, sentences, follow in _sentences(meeting):
        for _, said, where in _statements(turn, sentences, follow):
            text = decision_text(said)
            if text:
                out.append(Decision(text, tuple(evidence(t, q, meeting.timed) for t, q in where)))
        nxt = turns[pos + 1] if pos + 1 < len(turns) else None
        if sentences and nxt is not None and _other(turn, nxt) and is_agreement(nxt.text):
            last = sentences[-1]
            text = None if decision_text(last) else proposal_text(last)
            if text:
                reply = sentences_of(nxt.text)[0]
                out.append(Decision(text, (evidence(turn, last, meeting.timed),
                                           evidence(nxt, reply, meeting.timed))))
    return out


def _other(a: Turn, b: Turn) -> bool:
    return a.speaker is None or b.speaker is None or a.speaker != b.speaker


# ---------------------------------------------------------------- action items

_ACTION_VERBS = frozenset("""send email e-mail mail forward share circulate distribute post upload publish push commit
merge deploy release install write draft prepare update revise edit rewrite finish finalize finalise complete fix
check double-check review verify test investigate analyze analyse evaluate measure compute calculate run rerun train
annotate transcribe translate collect gather compile summarize summarise document organize organise schedule book
arrange coordinate contact call ask talk speak meet ping remind notify inform invite confirm order buy purchase get
provide deliver submit present report bring print create make build design implement add remove delete move clean
download process convert extract copy handle plan propose sign approve negotiate reply respond answer discuss record
clarify start do put set look follow reach take sort figure find let give""".split())
_NEEDS_PARTICLE = {"look": r"into|at|over|through", "follow": r"up", "reach": r"out", "set": r"up",
                   "take": r"care|over", "sort": r"out", "figure": r"out", "find": r"out", "put": r"together",
                   "let": r"\w+\s+know|(?:\w+\s+){0,3}know", "get": r"back|in\s+touch|the|a|an|some|them|those|this"}
_ADVERBS = re.compile(r"(?i)^(?:(?:also|just|then|probably|definitely|certainly|quickly|first|actually|still|"
                      r"personally|try\s+to|go\s+ahead\s+and)\s+)+")
_SUBJECT = rf"(?P<subj>(?i:\bI\b|\bwe\b|\bthe\s+team\b|\beveryone\b|\beverybody\b)|\b{_NAME})"
_COMMIT = re.compile(rf"""{_SUBJECT}(?:\s+(?i:will|shall|is\s+going\s+to|am\s+going\s+to|are\s+going\s+to)
   |(?i:'ll|'m\s+going\s+to|'re\s+going\s+to|'s\s+going\s+to|'m\s+gonna|'re\s+gonna))\s+(?P<task>.+)$""", re.X)
_MUST = re.compile(rf"{_SUBJECT}\s+(?i:need|needs|have|has)\s+to\s+(?P<task>.+)$")
# "Action item for Jonas: order …", "Action item, Jonas will …", "To do. Send …": see the spoken cues.
_PREFIX = re.compile(rf"""^\W*+{_ACTION_CUE}(?:\s+(?i:for)\s+(?P<name>{_NAME})(?:{_SEPS}|\s++(?=[a-z]))|{_SEPS})
   (?P<rest>.+)$""", re.X)
_REQUEST = re.compile(rf"(?:^|[,;]\s*)(?:(?P<name>{_NAME}),\s+)?(?i:(?:can|could|would|will)\s+you\s+"
                      r"(?:please\s+)?)(?P<task>.+?)\s*\?$")
# A name starts a word: tried from inside one, each start rescanned the rest of a long word.
_PLEASE = re.compile(rf"(?:(?<!\w)(?P<name>{_NAME}),\s+)?(?i:\bplease)\s+(?P<task>.+)$")
_ACCEPT = re.compile(r"(?i)^(?:yes|yeah|yep|sure|of\s+course|will\s+do|no\s+problem|absolutely|definitely|"
                     r"certainly|i\s+can|i\s+will|i'll|consider\s+it\s+done|on\s+it)\b")
_REFUSE = re.compile(r"(?i)\b(?:can't|cannot|won't|not\s+sure|no\s+time|don't\s+think)\b")
_NOT_NAMES = frozenset("""it this that there he she they you who what which everyone everybody someone somebody nobody
one the a an and so but or then maybe also now today tomorrow next yes yeah okay ok well if when where why how these
those here we i our my your his her their its some any no nothing everything something all both each this
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august september
october november december hopefully probably perhaps please thanks sure because""".split())
_EMPTY_OBJECTS = frozenset("sure know out up back togeth care over touch later again now soon first".split())
_BOUNDARY = re.compile(r"(?i)(?<!\s)\s*+(?:;|,\s*+(?:and|but|so|because)\b)"
                       r"|(?<!\s)\s++(?:because|but|so\s+that|since|unless|if)\b")


def owner_of(subject: str, speaker: str | None, speakers: list[str]) -> str | None:
    """Who a subject names: "I" is the speaker, "we"/"the team" nobody in particular, else the named person."""
    s = subject.strip("[] ")
    if s.lower() == "i":
        return speaker
    if s.lower() in ("we", "the team", "everyone", "everybody"):
        return None
    for name in speakers:
        if name.lower() == s.lower():
            return name
    firsts = [n for n in speakers if n.split()[0].lower() == s.split()[0].lower()]
    return firsts[0] if len(firsts) == 1 else s


def task_of(text: str, due_text: str | None = None) -> str | None:
    """The verb phrase of a commitment, cut at the next clause and without its deadline; None if no action."""
    t = _ADVERBS.sub("", clean(text))
    t = _BOUNDARY.split(t, maxsplit=1)[0]
    if due_text:
        t = t.replace(_plain(due_text), " ")
    t = re.sub(r"\s+", " ", t).strip(" ,.;:!?-")
    words = t.split()
    if not words:
        return None
    verb = words[0].lower()
    if verb not in _ACTION_VERBS:
        return None
    particle = _NEEDS_PARTICLE.get(verb)
    if particle and not re.match(rf"(?i)\S+\s+(?:\w+\s+)?(?:{particle})\b", t):
        return None
    if not {w for w in content_words(" ".join(words[1:])) if len(w) > 2} - _EMPTY_OBJECTS:
        return None  # "make sure", "check it out": no object to act on
    return t[:1].upper() + t[1:]


def commitment(sentence: str, speaker: str | None, speakers: list[str],
               meeting_date: str | None = None) -> ActionItem | None:
    """An action item a sentence states on its own ("I'll send the report by Friday"); evidence left empty."""
    plain = _plain(sentence).strip()
    if plain.endswith("?"):
        return None
    due = find_due(plain, meeting_date)
    owner, task = None, None
    pre = _PREFIX.match(plain)
    if pre:
        inner = commitment(pre.group("rest"), speaker, speakers, meeting_date)
        if inner and inner.owner:
            return inner
        owner = owner_of(pre.group("name"), speaker, speakers) if pre.group("name") else None
        task = clean(pre.group("rest").replace(due[0], " ") if due else pre.group("rest")).rstrip(" ,.;:!")
    else:
        for rx, needs_due in ((_COMMIT, False), (_MUST, True)):
            m = _subject_search(rx, plain)
            # "we need to talk today" is no action item; "Anna needs to finish it by Thursday" is.
            if not m or (needs_due and not (due and re.match(r"(?i)by|before|until|till|no|due", due[0]))):
                continue
            if re.match(r"(?i)\s*(?:not|never)\b", m.group("task")):
                return None
            team = m.group("subj").lower() in ("we", "the team", "everyone", "everybody")
            if team and decision_text(plain):  # "we will go with the new cells" is a decision
                return None
            owner = owner_of(m.group("subj"), speaker, speakers)
            task = task_of(m.group("task"), due[0] if due else None)
            break
    if not task or not _has_content(task):
        return None
    return ActionItem(task, owner, due[1] if due else None, due[0] if due else None, ())


def _subject_search(rx: re.Pattern, plain: str) -> re.Match | None:
    """The first match of ``rx`` whose subject is a person or the team ("Then Anna will" -> "Anna")."""
    pos = 0
    while (m := rx.search(plain, pos)) is not None:
        if _subject_ok(plain, m):
            return m
        pos = m.start("subj") + 1
    return None


def _subject_ok(plain: str, m: re.Match) -> bool:
    subj = m.group("subj").strip("[] ")
    if subj.lower() in ("i", "we", "the team", "everyone", "everybody"):
        before = plain[:m.start()].lower()
        return not re.search(r"\b(?:if|whether|unless|when|what)\s*$", before)
    if subj.split()[0].lower() in _NOT_NAMES:
        return False
    return not re.search(r"(?i)\b(?:the|a|an|this|that|our|your|their|my|his|her|its|new|if|whether)\s*$",
                         plain[:m.start()])


def request(sentence: str) -> tuple[str | None, str] | None:
    """A request to someone ("Anna, can you send the slides?"): (addressed name, task), before anyone accepts."""
    plain = clean(sentence)
    m = _REQUEST.search(plain) or (_PLEASE.search(plain) if not plain.endswith("?") else None)
    if not m:
        return None
    task = task_of(m.group("task"), (find_due(m.group("task")) or (None,))[0])
    name = m.group("name")
    if not task or (name and name.strip("[]").lower() in _NOT_NAMES):
        return None
    return name, task


_OKAYS = re.compile(r"(?i)(?:ok(?:ay)?\b\W*+)+")


def is_acceptance(reply: str) -> bool:
    text = clean(reply, lead=False)
    okays = _OKAYS.match(text)
    if okays:  # "Okay." accepts; "Okay, thanks everyone." only closes; "Okay, okay, sure." accepts
        text = text[okays.end():]
        if not content_words(text):
            return True
        text = clean(text, lead=False)
    return bool(_ACCEPT.match(text)) and not _REFUSE.search(text[:60])


def find_actions(meeting: Meeting) -> list[ActionItem]:
    """Commitments ("I will ...", "Anna will ...", "action item: ..."), deadlines that someone "needs to"
    meet, and requests ("can you ...?", "please ... by Friday") that the next speaker accepted."""
    speakers = list(dict.fromkeys(t.speaker for t in meeting.turns if t.speaker))
    turns, out = meeting.turns, []
    for pos, turn, sentences, follow in _sentences(meeting):
        nxt = turns[pos + 1] if pos + 1 < len(turns) else None
        for s, said, where in _statements(turn, sentences, follow):
            item = commitment(said, turn.speaker, speakers, meeting.date)
            if item:
                out.append(ActionItem(item.task, item.owner, item.due, item.due_text,
                                      tuple(evidence(t, q, meeting.timed) for t, q in where)))
                continue
            asked = request(s)
            if not asked:
                continue
            name, task = asked
            due = find_due(s, meeting.date)
            accepted = nxt is not None and _other(turn, nxt) and s == sentences[-1] and is_acceptance(nxt.text)
            if accepted:
                reply = sentences_of(nxt.text)[0]
                due = due or find_due(reply, meeting.date)
                ev = (evidence(turn, s, meeting.timed), evidence(nxt, reply, meeting.timed))
                owner = nxt.speaker or (owner_of(name, None, speakers) if name else None)
            elif due and not s.rstrip().endswith("?"):  # "please ... by <date>" stands without a reply
                ev, owner = (evidence(turn, s, meeting.timed),), owner_of(name, None, speakers) if name else None
            else:
                continue
            out.append(ActionItem(task, owner, due[1] if due else None, due[0] if due else None, ev))
    return out


# ---------------------------------------------------------------- open questions

_TAG_QUESTION = re.compile(r"(?i)(?:^|,)\s*(?:right|okay|ok|yeah|yes|no|you\s+know|isn't\s+it|aren't\s+they|"
                           r"don't\s+you\s+think|correct|huh|eh|or\s+not|no\s+idea)\s*\?$")
_OPEN = re.compile(r"""(?ix)\b(?:open\s+(?:question|issue|point)|still\s+(?:need|have)\s+to\s+(?:figure\s+out|decide
   |find\s+out|clarify|check)|remains?\s+to\s+be\s+seen|to\s+be\s+(?:decided|determined|clarified|confirmed)|tbd
   |don't\s+know\s+yet|not\s+yet\s+(?:clear|decided)
   |(?:not\s+sure|unclear|not\s+clear|don't\s+know)(?:\s+\w+){0,2}?\s+(?:whether|if|how|what|who|when|which|why))\b""")
_ANSWER_START = re.compile(r"(?i)^\W*(?:yes|yeah|yep|no|nope|sure|of\s+course|definitely|exactly|correct|it\s+is|"
                           r"it's|we\s+do|we\s+did|we\s+will|i\s+think|probably|because)\b")
_NO_ANSWER = re.compile(r"(?i)\b(?:don't\s+know|no\s+idea|not\s+sure|good\s+question|no\s+clue|dunno)\b")


MAX_QUESTION_WORDS = 40  # a longer "question" is a monologue that happens to end with "?"


def question_text(sentence: str) -> str | None:
    """The question a sentence asks, cleaned, if it has substance (a few content words, not "right?")."""
    plain = _plain(sentence).strip()
    if not plain.endswith("?") or _TAG_QUESTION.search(plain):
        return None
    text = clean(plain)
    return text if len(content_words(text)) >= 3 and len(text.split()) <= MAX_QUESTION_WORDS else None


def answers(reply: str, question: str | None = None) -> bool:
    """Whether a reply answers a question: starts like an answer, or says something of substance
    (about the question's words, when ``question`` is given: a later turn may change the subject)."""
    text = clean(reply, lead=False)
    if _NO_ANSWER.search(text[:80]):
        return False
    if _ANSWER_START.match(text):
        return True
    statements = [s for s in split_sentences(text) if not s.rstrip().endswith("?")]
    said = content_words(" ".join(statements))
    return len(said) >= 3 and (question is None or bool(said & content_words(question)))


def find_open_questions(meeting: Meeting) -> list[tuple[OpenQuestion, bool]]:
    """Questions nobody answered in the next two turns, and statements that leave something open.

    Returns (question, flagged) in meeting order; flagged means the words say it is open.
    """
    turns, out = meeting.turns, []
    for pos, turn, sentences, _ in _sentences(meeting):
        for i, s in enumerate(sentences):
            flagged = bool(_OPEN.search(_plain(s)))
            text = question_text(s)
            if text and not flagged:
                if request(s) is not None:  # a request is an action item once accepted, not a question
                    continue
                later = " ".join(x for x in sentences[i + 1:] if not x.rstrip().endswith("?"))
                replies = [t for t in turns[pos + 1:pos + 3] if _other(turn, t)]
                if len(content_words(later)) >= 5 or any(answers(t.text, s if n else None)
                                                         for n, t in enumerate(replies)):
                    continue
            elif flagged and not text:
                text = clean(s)
                if len(content_words(text)) < 4 or decision_text(s):
                    continue
            elif not text:
                continue
            out.append((OpenQuestion(text, (evidence(turn, s, meeting.timed),)), flagged))
    return out
