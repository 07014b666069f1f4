"""Extractive meeting minutes: no LLM, so minutes always work.

Phrase rules (``rules``) find decisions, action items and open questions, each with its
sentence quoted verbatim. The summary quotes the sentences a small learned scorer
(``scorer``: position, length, centrality, the meeting's own words, speaker share ...)
rates most like summary material, with a redundancy penalty (MMR), up to about the length
of a human summary, in meeting order. Topics are TextTiling-like
stretches cut where the words and the sentence embeddings change most; titles are their
most distinctive keywords. Cost stays bounded on a two-hour meeting: at most
MAX_CANDIDATES + MAX_QUESTIONS sentences are embedded, in batches, with progress.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache

import numpy as np

from core.index.embedders import Embedder
from core.minutes.base import Progress
from core.minutes.rules import find_actions, find_decisions, find_open_questions
from core.minutes.scorer import Sentence, SentenceScorer, SummaryTable, features, pick_summary
from core.minutes.summary_weights import WEIGHTS
from core.models import Meeting, Minutes, OpenQuestion, Topic
from core.textutil import clean, content_words, key, split_sentences

MAX_CANDIDATES = 240  # summary sentences embedded, spread over the meeting
MAX_QUESTIONS = 48
MAX_OPEN_QUESTIONS = 8
BATCH = 32
MIN_WORDS, MAX_WORDS = 6, 45
SUMMARY_SHARE = 0.1  # the summary stays under this share of the transcript's words
BLOCK_TERMS = 20  # content words per TextTiling block (whole turns); fewer in a short meeting
MAX_BLOCKS = 800  # more in a very long meeting, so the block-by-vocabulary matrix stays small
KEYWORDS = 3
DEPTH_SD = 1.0  # a topic boundary is a valley deeper than the mean valley by this many deviations
WINDOW_BLOCKS = 10  # TextTiling's k: blocks compared on either side of a gap

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|\d+")
# A tag never spans its own opening bracket: an unclosed "[[[[…" is one pass, not one per "[".
_MARKUP = re.compile(r"<[^<>]*+>|\[[^\[\]]*+\]|\{[^{}]*+\}")
# Function words and the small talk of meetings: never keywords, never topic signal.
_STOP = frozenset("""a about above after again against all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further had hadn't has hasn't have haven't having he her here hers herself him himself his
how i if in into is isn't it it's its itself just let let's me more most my myself no nor not of off on once only or
other our ours ourselves out over own same she should so some such than that that's the their theirs them themselves
then there there's these they this those through to too under until up very was wasn't we were weren't what when
where which while who whom why will with won't would you your yours yourself yeah yes okay ok um uh uhm ehm hmm mm
like really actually think thought know mean well right sure thing things stuff going gonna get got getting one ones
lot lots bit kind sort something anything everything nothing way want wanted need needs see look make made say said
says guess maybe probably still even much many good great now let's thank thanks might must shall people time today
go goes went come came take took put use used doing done tell told yep laugh also already another around back
basically big certain course different else enough ever every first give good guys hey hmm just kind last least
less little long maybe mhm new next nice oh okay part pretty quite rather real second seems several since small
somebody someone sometimes stuff sure talk talking thanks though three two try trying whatever whether yeah yet
cause gotta wanna kinda oops alright anyway anyways somehow""".split())


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


class ExtractiveMinutes:
    """Drafts minutes by quoting the transcript: rules for items, embeddings for the summary."""

    def __init__(self, embedder: Embedder, *, summary_words: int | None = None, max_topics: int = 8,
                 weights: dict | None = None):
        weights = weights or WEIGHTS
        self._embedder = embedder
        self._scorer = SentenceScorer(weights)
        # About the length of a human summary (tuned with the weights); never over SUMMARY_SHARE of the meeting.
        self._summary_words = summary_words or int(weights["summary_words"])
        self._redundancy = float(weights["redundancy"])
        self._coverage = float(weights.get("coverage", 0.0))
        self._max_topics = max_topics

    @property
    def model_id(self) -> str:
        return f"extractive-minutes:{self._embedder.model_id.split(':', 1)[-1]}"

    def draft(self, meeting: Meeting, progress: Progress | None = None) -> Minutes:
        turns = meeting.turns
        attendees = list(dict.fromkeys(t.speaker for t in turns if t.speaker))
        if not turns:
            return Minutes(meeting.title or "Meeting", meeting.date, [], "", [], [], [], [], False,
                           self.model_id, ["The transcript is empty."])
        names = {w.lower() for a in attendees for w in _TOKEN.findall(a)}
        tokens = [_tokens(t.text, names) for t in turns]
        decisions = _dedupe(find_decisions(meeting), lambda d: key(d.text))
        actions = _dedupe(find_actions(meeting), lambda a: (key(a.task), a.owner))
        asked = _dedupe(find_open_questions(meeting), lambda q: key(q[0].text))
        if len(asked) > MAX_QUESTIONS:  # flagged first, then the wordiest
            keep = sorted(range(len(asked)), key=lambda i: (-asked[i][1], -len(asked[i][0].text)))
            asked = [asked[i] for i in sorted(keep[:MAX_QUESTIONS])]
        table, q_vecs = self._table(meeting, tokens, [q.text for q, _ in asked], progress)
        words = sum(len(t.text.split()) for t in turns)
        budget = min(self._summary_words, max(MAX_WORDS, int(words * SUMMARY_SHARE)))
        chosen = pick_summary(table, self._scorer.score(table.features), budget, self._redundancy, self._coverage)
        summary = " ".join(_terminated(table.sentences[i].text) for i in chosen)
        centroid = _unit(table.vecs.sum(0)) if len(table.sentences) else None
        spans = table.spans
        questions = _central_questions(asked, q_vecs, centroid)
        titles = _keyphrases([[tok for p in range(s, e + 1) for tok in tokens[p] + [None]] for s, e in spans])
        topics = [Topic(", ".join(t) or f"Part {n}", *_bounds(meeting, s, e))
                  for n, (t, (s, e)) in enumerate(zip(titles, spans), 1)]
        title = meeting.title
        if not title:
            top = _keyphrases([[tok for turn in tokens for tok in turn + [None]]])[0]
            title = f"Meeting: {', '.join(top)}" if top else "Meeting"
        notes = [f"Extractive minutes (no LLM): the summary quotes {len(chosen)} of the transcript's sentences, "
                 f"those a learned scorer rates most summary-like; phrase rules found {len(decisions)} decision(s), "
                 f"{len(actions)} action item(s) and "
                 f"{len(questions)} open question(s), each with its quote from the transcript."]
        if len(asked) > len(questions):
            notes.append(f"Kept the {len(questions)} most central of {len(asked)} open questions.")
        return Minutes(title=title, date=meeting.date, attendees=attendees, summary=summary, topics=topics,
                       decisions=decisions, action_items=actions, open_questions=questions,
                       timed=meeting.timed, model=self.model_id, notes=notes)

    def summary_table(self, meeting: Meeting) -> SummaryTable:
        """The sentences the summary chooses from, with their embeddings, topics and features (for training)."""
        names = {w.lower() for t in meeting.turns if t.speaker for w in _TOKEN.findall(t.speaker)}
        return self._table(meeting, [_tokens(t.text, names) for t in meeting.turns], [], None)[0]

    def _table(self, meeting: Meeting, tokens: list[list], questions: list[str],
               progress: Progress | None) -> tuple[SummaryTable, np.ndarray]:
        """Summary candidates described for the scorer; the questions are embedded in the same batches."""
        sentences = _candidates(meeting, tokens)
        vecs = self._embed([c.text for c in sentences] + questions, progress)
        cand_vecs, q_vecs = vecs[:len(sentences)], vecs[len(sentences):]
        spans = _segment(tokens, [c.pos for c in sentences], cand_vecs, self._max_topics)
        span_of = np.searchsorted([s for s, _ in spans], [c.pos for c in sentences], side="right") - 1
        counts = Counter(t[1] for turn in tokens for t in turn if t)
        x = features(meeting, sentences, cand_vecs, span_of, counts)
        return SummaryTable(sentences, cand_vecs, spans, span_of, counts, x), q_vecs

    def _embed(self, texts: list[str], progress: Progress | None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), BATCH):
            out.append(self._embedder.embed(texts[i:i + BATCH]))
            if progress:
                progress(min(i + BATCH, len(texts)), len(texts))
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def _tokens(text: str, names: set[str]) -> list[tuple[str, str] | None]:
    """Content words of a text as (surface, stem); None where a stop word breaks a phrase."""
    words = [w.lower() for w in _TOKEN.findall(_MARKUP.sub(" ", text))]
    keep = [w for w in words if w not in _STOP and w not in names and len(w) > 2 and not w.isdigit() and "'" not in w]
    stems = dict(zip(keep, _stemmer().stemWords(keep)))
    return [(w, stems[w]) if w in stems else None for w in words]


def _candidates(meeting: Meeting, tokens: list[list]) -> list[Sentence]:
    """Statements worth quoting in a summary, at most MAX_CANDIDATES spread over the meeting."""
    df = Counter(stem for turn in tokens for stem in {t[1] for t in turn if t})
    n = len(tokens)
    found: list[tuple[Sentence, float]] = []
    for pos, turn in enumerate(meeting.turns):
        for s in _statements(turn.text):
            text = clean(s)
            size = len(text.split())
            if s.rstrip().endswith("?") or text.endswith("?") or not MIN_WORDS <= size <= MAX_WORDS:
                continue
            if len(content_words(text)) < 4:
                continue
            stems = {t[1] for t in _tokens(text, set()) if t}
            # Dense in words particular to this meeting's stretches, not long-winded.
            score = sum(math.log(1 + n / df.get(st, 1)) for st in stems) / math.sqrt(size)
            found.append((Sentence(pos, text, score, 1 - size / max(size, len(s.split())), frozenset(stems)), score))
    if len(found) <= MAX_CANDIDATES:
        return [c for c, _ in found]
    buckets = MAX_CANDIDATES // 8
    keep: list[int] = []
    for b in range(buckets):
        lo, hi = len(found) * b // buckets, len(found) * (b + 1) // buckets
        keep += sorted(range(lo, hi), key=lambda i: -found[i][1])[:MAX_CANDIDATES // buckets]
    return [found[i][0] for i in sorted(keep)]


def _statements(text: str) -> list[str]:
    """Sentences of a turn; an unpunctuated monologue in windows of words, so it can be quoted at all."""
    out = []
    for s in split_sentences(text):
        words = s.split()
        step = MAX_WORDS * 2 // 3
        out += [s] if len(words) <= MAX_WORDS else [" ".join(words[i:i + step]) for i in range(0, len(words), step)]
    return out


def _segment(tokens: list[list], cand_pos: list[int], cand_vecs: np.ndarray,
             max_topics: int) -> list[tuple[int, int]]:
    """Split the turns into at most ``max_topics`` contiguous (first, last) stretches, TextTiling-like."""
    blocks: list[tuple[int, int]] = []
    start, count = 0, 0
    terms = sum(1 for turn in tokens for t in turn if t)
    size = max(min(BLOCK_TERMS, max(6, terms // 60)), terms // MAX_BLOCKS)
    for pos, turn in enumerate(tokens):
        count += sum(1 for t in turn if t)
        if count >= size:
            blocks.append((start, pos))
            start, count = pos + 1, 0
    if start < len(tokens):
        blocks.append((start, len(tokens) - 1))
    if max_topics <= 1 or len(blocks) < 6:
        return [(0, len(tokens) - 1)]
    vocab: dict[str, int] = {}
    rows = [Counter(vocab.setdefault(t[1], len(vocab)) for p in range(s, e + 1) for t in tokens[p] if t)
            for s, e in blocks]
    lex = np.zeros((len(blocks), len(vocab)), dtype=np.float32)
    for b, row in enumerate(rows):
        lex[b, list(row)] = list(row.values())
    lex *= np.log(len(blocks) / np.maximum(1, (lex > 0).sum(0)))
    emb = np.zeros((len(blocks), cand_vecs.shape[1] if len(cand_vecs) else 1), dtype=np.float32)
    ends = [e for _, e in blocks]
    for pos, vec in zip(cand_pos, cand_vecs):
        emb[np.searchsorted(ends, pos)] += vec
    k = max(2, min(WINDOW_BLOCKS, len(blocks) // 10))
    # Words and meaning both shift at a topic change; each signal standardised, then summed.
    sims = _zscore(_gap_similarity(lex, k)) + _zscore(_gap_similarity(emb, k))
    if len(sims) >= 20:  # smoothing helps a long, noisy series and blurs a short one
        sims = np.convolve(np.pad(sims, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    depth = np.array([_depth(sims, i) for i in range(len(sims))])
    valleys = depth[depth > 0]
    floor = valleys.mean() + DEPTH_SD * valleys.std() if len(valleys) else np.inf
    min_len = max(2, len(blocks) // (2 * max_topics))
    cuts: list[int] = []  # a cut after block g
    for g in np.argsort(-depth, kind="stable"):
        if len(cuts) == max_topics - 1 or depth[g] < floor or depth[g] <= 0:
            break
        if g + 1 >= min_len and len(blocks) - g - 1 >= min_len and all(abs(g - c) >= min_len for c in cuts):
            cuts.append(int(g))
    firsts = [0] + [blocks[g + 1][0] for g in sorted(cuts)]
    return [(f, nxt - 1) for f, nxt in zip(firsts, firsts[1:] + [len(tokens)])]


def _gap_similarity(rows: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity of the k blocks before and after each gap between blocks."""
    csum = np.vstack([np.zeros((1, rows.shape[1]), dtype=rows.dtype), np.cumsum(rows, 0)])
    n = len(rows)
    gaps = np.arange(n - 1)
    left = csum[gaps + 1] - csum[np.maximum(0, gaps + 1 - k)]
    right = csum[np.minimum(n, gaps + 1 + k)] - csum[gaps + 1]
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return np.where(norms > 0, (left * right).sum(1) / np.maximum(norms, 1e-9), np.nan)


def _zscore(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    if ok.sum() < 2 or np.std(x[ok]) == 0:
        return np.zeros_like(x)
    return np.where(ok, (x - np.nanmean(x)) / np.nanstd(x), 0.0)


def _depth(sims: np.ndarray, i: int) -> float:
    """How far a gap's similarity lies below the peaks on either side (TextTiling's depth score)."""
    left = i
    while left > 0 and sims[left - 1] >= sims[left]:
        left -= 1
    right = i
    while right < len(sims) - 1 and sims[right + 1] >= sims[right]:
        right += 1
    return float(sims[left] - sims[i] + sims[right] - sims[i])


def _central_questions(asked: list[tuple[OpenQuestion, bool]], vecs: np.ndarray,
                       centroid: np.ndarray | None) -> list[OpenQuestion]:
    if len(asked) <= MAX_OPEN_QUESTIONS or centroid is None:
        return [q for q, _ in asked[:MAX_OPEN_QUESTIONS]]
    score = vecs @ centroid + 0.1 * np.array([flagged for _, flagged in asked])
    keep = sorted(np.argsort(-score)[:MAX_OPEN_QUESTIONS].tolist())
    return [asked[i][0] for i in keep]


def _keyphrases(groups: list[list]) -> list[list[str]]:
    """The KEYWORDS most distinctive words or two-word phrases of each group of tokens."""
    counts, surfaces = [], Counter()
    for toks in groups:
        c: Counter = Counter()
        for a, b in zip(toks, toks[1:] + [None]):
            if a:
                c[a[1]] += 1
                surfaces[(a[1], a[0])] += 1
                if b and b[1] != a[1]:
                    c[(a[1], b[1])] += 1
                    surfaces[((a[1], b[1]), f"{a[0]} {b[0]}")] += 1
        counts.append(c)
    df = Counter(term for c in counts for term in c)
    surface: dict = {}
    for (term, text), n in surfaces.most_common():
        surface.setdefault(term, text)
    out = []
    for c in counts:
        def score(term, n):
            weight = math.log(1 + len(groups) / df[term])
            return n * weight * (2 if isinstance(term, tuple) else 1)

        ranked = sorted(((score(t, n), t) for t, n in c.items() if not isinstance(t, tuple) or n >= 2),
                        key=lambda x: (-x[0], str(x[1])))
        picked: list = []
        used: set[str] = set()
        for _, term in ranked:
            stems = set(term) if isinstance(term, tuple) else {term}
            if stems & used:
                continue
            picked.append(surface[term])
            used |= stems
            if len(picked) == KEYWORDS:
                break
        out.append(picked)
    return out


def _bounds(meeting: Meeting, first: int, last: int) -> tuple[float | None, float | None]:
    a, b = meeting.turns[first], meeting.turns[last]
    if meeting.timed:
        return a.start, b.end if b.end is not None else b.start
    return float(a.index), float(b.index)


def _dedupe(items: list, keyfn) -> list:
    seen, out = set(), []
    for item in items:
        k = keyfn(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _terminated(sentence: str) -> str:
    s = sentence.rstrip()
    return s if s.endswith((".", "!", "?")) else s + "."

