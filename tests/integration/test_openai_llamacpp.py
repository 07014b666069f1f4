"""The openai backend against a real llama.cpp server (xllamacpp) running the bundled SmolLM2-135M.

Real HTTP, real tokens, real streaming. What the model writes depends on the CPU, so the
tests check what a user relies on: answers that cite valid sources or abstain cleanly,
streams that deliver tokens and then the answer, minutes whose evidence is verbatim, and
clear errors when the server refuses, overflows or dies mid-reply.
"""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from app import build_engine
from core.answer.answering import NOT_FOUND
from core.config import AnswerSettings, LLMSettings, Settings
from core.errors import BackendError
from core.llm.openai_backend import OpenAIGenerator
from core.minutes.base import check_evidence
from core.minutes.extractive import ExtractiveMinutes
from core.minutes.llm import LLMMinutes
from core.models import Meeting, Message, Turn
from tests.support.llamacpp import llamacpp_or_skip

KEY = "test-key-for-the-local-llama-server"
CONTEXT = 2048
QUESTION = "How many weeks of parental leave do employees get?"
CHAT = [Message("system", "You answer briefly."), Message("user", "Name three colours.")]


@pytest.fixture(scope="module")
def llama():
    with llamacpp_or_skip(context_tokens=CONTEXT, api_key_env="LLAMA_TEST_API_KEY",
                          env={"LLAMA_TEST_API_KEY": KEY}) as server:
        yield server


def _generator(server, key: str = KEY, **kw) -> OpenAIGenerator:
    return OpenAIGenerator(server.base_url, "smollm2", api_key=SecretStr(key), context_tokens=CONTEXT, **kw)


@pytest.fixture
def llm_engine(tmp_path, embedder, samples, llama):
    settings = Settings(data_dir=tmp_path / "d", answer=AnswerSettings(k=2),
                        llm=LLMSettings(backend="openai", base_url=llama.base_url, model="smollm2",
                                        api_key=KEY, context_tokens=CONTEXT, max_new_tokens=48, timeout_s=120))
    engine = build_engine(settings, embedder=embedder)
    engine.ingest([samples / "handbook.md"])
    yield engine
    engine.close()


def _cites_validly_or_abstains(engine, answer) -> None:
    assert answer.model == "openai:smollm2"
    if answer.abstained:
        assert answer.text == NOT_FOUND and answer.citations == []
        return
    marks = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    numbers = [c.n for c in answer.citations]
    assert numbers and numbers == list(range(1, len(numbers) + 1)) and marks == set(numbers)
    visible = engine.registry.visible_chunks([c.chunk.chunk_id for c in answer.citations])
    assert all(c.chunk.chunk_id in visible and c.chunk.source.endswith("handbook.md") for c in answer.citations)


def test_an_answer_through_llama_cpp_cites_valid_sources_or_abstains(llm_engine):
    answer = llm_engine.ask(QUESTION)
    _cites_validly_or_abstains(llm_engine, answer)
    assert "<|im_" not in answer.text  # the chat template's end mark stops generation, never shows


def test_a_streamed_answer_arrives_token_by_token_then_validated(llm_engine):
    events = list(llm_engine.ask_stream(QUESTION))
    tokens = [e.text for e in events if e.kind == "token"]
    assert events[-1].kind == "answer" and len(tokens) >= 2 and all(tokens)
    assert not any("<|im_" in t for t in tokens)
    _cites_validly_or_abstains(llm_engine, events[-1].answer)


def test_max_tokens_bounds_a_real_reply(llama):
    gen = _generator(llama)
    pieces = list(gen.stream(CHAT, max_tokens=5))
    assert 1 <= len(pieces) <= 5  # llama.cpp sends at most one token per event
    assert gen.complete(CHAT, max_tokens=5).strip()


def test_a_wrong_api_key_is_refused_at_once(llama):
    gen = _generator(llama, key="not-the-key-of-this-server", max_retries=3)
    with pytest.raises(BackendError, match="HTTP 401"):
        gen.complete(CHAT, max_tokens=4)
    with pytest.raises(BackendError, match="HTTP 401"):
        list(gen.stream(CHAT, max_tokens=4))


def test_a_prompt_beyond_the_servers_context_names_the_setting(llama):
    gen = OpenAIGenerator(llama.base_url, "smollm2", api_key=SecretStr(KEY), context_tokens=8192)
    too_long = [Message("user", "budget review " * 2000)]
    with pytest.raises(BackendError, match="IMP_LLM__CONTEXT_TOKENS"):
        gen.complete(too_long, max_tokens=4)
    with pytest.raises(BackendError, match="IMP_LLM__CONTEXT_TOKENS"):
        list(gen.stream(too_long, max_tokens=4))


def test_minutes_through_llama_cpp_keep_only_verbatim_evidence(llama, embedder):
    lines = [("Priya", "Today we review the rover firmware release plan."),
             ("Marco", "The battery driver regression is fixed on the main branch."),
             ("Lena", "Then we ship firmware 2.4 on March 6 as planned."),
             ("Priya", "Agreed. Marco, please write the release notes by Friday."),
             ("Marco", "I will write the release notes by Friday."),
             ("Lena", "Who signs off on the safety checklist this time?")]
    meeting = Meeting([Turn(i, who, text) for i, (who, text) in enumerate(lines, 1)], title="Rover weekly")
    drafter = LLMMinutes(_generator(llama, timeout_s=120), ExtractiveMinutes(embedder), max_new_tokens=96,
                         max_repairs=0)
    minutes = drafter.draft(meeting)
    assert minutes.model == "openai:smollm2" and minutes.title == "Rover weekly"
    assert minutes.summary.strip() and minutes.attendees == ["Priya", "Marco", "Lena"]
    assert any("1 window" in n for n in minutes.notes)
    assert check_evidence(meeting, minutes) == []


def test_a_server_that_dies_mid_stream_is_an_error_not_a_short_answer():
    with llamacpp_or_skip(context_tokens=512) as server:
        gen = OpenAIGenerator(server.base_url, "smollm2", context_tokens=512, max_retries=0)
        stream = gen.stream([Message("user", "Tell me a long story about a rover.")], max_tokens=400)
        first = next(stream)
        server.kill()
        with pytest.raises(BackendError, match="broke off|ended before"):
            for _ in stream:
                pass
    assert first
