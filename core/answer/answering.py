"""Answering: retrieve within scopes, write a draft (LLM or extractive), validate, log.

Every question gets an answer or a plain statement that the documents the asker
can see do not answer it. Citations in the returned answer always name sources
that were retrieved and given to the writer, numbered from 1.

Each answer records the served versions that made it: the embedder that retrieved
(a canary routes ``canary_share`` of questions to a served challenger) and the
answer adapter the generator was started with.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from core.answer.extractive import ExtractiveWriter
from core.answer.prompts import Packed, answer_messages, pack_sources, rewrite_messages
from core.answer.redaction import redact
from core.answer.validation import validate
from core.errors import ImpError
from core.index.hybrid import Retrieval
from core.llm.base import Generator
from core.models import Answer, Citation, Hit, Message
from core.observe import Observer, guarded
from core.store.answers import AnswerLog

log = logging.getLogger(__name__)

NOT_FOUND = "I could not find an answer to that in the documents available here."


class Retriever(Protocol):
    """Where the answerer finds its sources (core.index.hybrid.HybridRetriever is one)."""

    def retrieve(self, query: str, k: int, scopes: list[str], *, challenger: bool = False) -> Retrieval:
        """The ``k`` best hits within ``scopes``, found with the challenger embedder when ``challenger``
        and one is served, and the version of the embedder that found them."""
        ...


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A piece of a streamed answer (``token``) or the final validated answer (``answer``)."""

    kind: str
    text: str = ""
    answer: Answer | None = None


class Answerer:
    """Turns a question into a validated, logged Answer."""

    def __init__(self, retriever: Retriever, answers: AnswerLog, extractive: ExtractiveWriter, *,
                 generator: Generator | None = None, k: int = 6, min_similarity: float = 0.35,
                 max_new_tokens: int = 256, canary_share: float = 0.0, canary_seed: int | None = None,
                 adapter: str | None = None, observer: Observer | None = None):
        """A share of questions, ``canary_share``, goes to the challenger embedder; ``adapter`` is the version
        of the answer adapter ``generator`` runs with. ``observer`` is told of each answer given and how long
        writing its draft took (core.observe)."""
        self._retriever = retriever
        self._canary_share = canary_share
        self._random = random.Random(canary_seed)
        self._adapter = adapter
        self.answers = answers
        self._extractive = extractive
        self._generator = generator
        self._k = k
        self._min_similarity = min_similarity
        self._max_new = max_new_tokens
        self._observer = guarded(observer)

    @property
    def model_id(self) -> str:
        return self._generator.model_id if self._generator else self._extractive.model_id

    def warm_up(self) -> None:
        if self._generator is not None and hasattr(self._generator, "warm_up"):
            self._generator.warm_up()

    def ask(self, question: str, scopes: list[str], history: list[Message] | None = None) -> Answer:
        answer = None
        for event in self._run(question, scopes, history or [], stream=False):
            answer = event.answer or answer
        assert answer is not None
        return answer

    def stream(self, question: str, scopes: list[str], history: list[Message] | None = None) -> Iterator[StreamEvent]:
        yield from self._run(question, scopes, history or [], stream=True)

    def read(self, answer_id: str) -> Answer:
        """A logged answer as it may be shown again: sources removed since, and what rested on them, left out."""
        stored = self.answers.get(answer_id)
        return redact(stored, self.answers.visible_sources(stored))

    def _run(self, question: str, scopes: list[str], history: list[Message], *, stream: bool) -> Iterator[StreamEvent]:
        started = time.perf_counter()
        query = self._standalone(question, history)
        to_challenger = self._canary_share > 0 and self._random.random() < self._canary_share
        retrieval = self._retriever.retrieve(query, self._k, scopes, challenger=to_challenger)
        hits = retrieval.hits
        retrieved = time.perf_counter()
        best = max((h.similarity or 0.0 for h in hits), default=0.0)
        draft, packed, notes = "", Packed([], [], []), []
        if best >= self._min_similarity:
            if self._generator is None:
                packed = Packed(hits, [h.chunk.text for h in hits], [])
                draft = self._extractive.write(question, hits)
                if stream and draft:
                    yield StreamEvent("token", draft)
            else:
                packed = self._pack(question, hits)
                messages = answer_messages(question, packed)
                if stream:
                    parts = []
                    for piece in self._generator.stream(messages, max_tokens=self._max_new):
                        parts.append(piece)
                        yield StreamEvent("token", piece)
                    draft = "".join(parts)
                else:
                    draft = self._generator.complete(messages, max_tokens=self._max_new)
        else:
            notes.append(f"best match similarity {best:.2f} is below the threshold {self._min_similarity:.2f}")
        generated = time.perf_counter()
        if best >= self._min_similarity:  # a draft was written (an abstention before writing takes no time)
            self._observer.stage("generate", generated - retrieved)
        checked = validate(draft, packed.hits, packed.texts)
        answer = Answer(
            answer_id=uuid.uuid4().hex,
            question=question,
            text=NOT_FOUND if checked.abstained else checked.text,
            abstained=checked.abstained,
            citations=[Citation(i, h.chunk) for i, h in enumerate(checked.cited, 1)],
            scopes=list(scopes),
            model=self.model_id,
            timings_ms={"retrieve": round(1000 * (retrieved - started), 1),
                        "generate": round(1000 * (generated - retrieved), 1),
                        "total": round(1000 * (time.perf_counter() - started), 1)},
            created_at=datetime.now(UTC).replace(tzinfo=None),
            notes=notes + packed.notes + checked.notes,
            embedder=retrieval.embedder,
            adapter=self._adapter,
            best_similarity=round(best, 4) if hits else None,
        )
        self.answers.save(answer, search_query=query)
        self._observer.answered(answer)
        yield StreamEvent("answer", answer=answer)

    def _pack(self, question: str, hits: list[Hit]) -> Packed:
        gen = self._generator
        assert gen is not None
        overhead = gen.count_tokens(answer_messages(question, Packed([], [], []))[0].content + question) + 64
        budget = gen.context_tokens - self._max_new - overhead
        return pack_sources(hits, budget, gen.count_tokens)

    def _standalone(self, question: str, history: list[Message]) -> str:
        """The question to search for: a follow-up rewritten to stand on its own."""
        if not history:
            return question
        if self._generator is not None:
            try:
                rewritten = self._generator.complete(rewrite_messages(history, question), max_tokens=64).strip()
                if rewritten and len(rewritten) < 4 * len(question) + 200:
                    return rewritten.splitlines()[0]
            except ImpError:  # the original question still works, just less precisely
                log.warning("could not rewrite a follow-up question", exc_info=True)
        previous = next((m.content for m in reversed(history) if m.role == "user"), "")
        return f"{previous} {question}".strip()
