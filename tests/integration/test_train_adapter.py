"""The answer adapter: examples from files and feedback, LoRA training (SFT then KTO) on a tiny random Llama,
served by the production transformers backend, and the gate that decides whether it may replace the champion."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from core.answer.prompts import SYSTEM
from core.errors import InvalidRequest
from core.llm.transformers_backend import TransformersGenerator
from core.models import RatedAnswer
from training.adapter import (
    AdapterConfig,
    boundary_differs,
    chat_row,
    fit_answer,
    train_adapter,
)
from training.adapter_data import cited_numbers, messages, rated_examples, read_examples
from training.adapter_eval import adapter_gate, evaluate_adapter

# The assistant's turn ends with the EOS token, so training teaches the model where an answer stops; the
# generation prompt ends on a token boundary ("\n"), so the prompt tokens are the same with or without an answer.
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}"
            "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>\n{% endif %}")
HOTEL = "Hotel allowance in Europe is 150 EUR per night."
LAPTOP = "Laptops are replaced every three years."
PARKING = "Parking at the office costs 5 EUR a day."
EPOCHS = 20
LINES = [
    {"query": "What is the hotel allowance?", "positive": HOTEL, "negatives": [LAPTOP],
     "answer": "The hotel allowance is 150 EUR per night."},
    {"query": "When are laptops replaced?", "positive": LAPTOP, "negatives": [PARKING],
     "answer": "Laptops are replaced every three years."},
    {"query": "Where do I park?", "positive": PARKING},  # no answer: nothing to imitate
    {"meeting_id": "standup", "meeting_transcripts": [
        {"speaker": "Ann", "content": "Good morning everyone."},
        {"speaker": "Bob", "content": "The release moves to Friday because the tests are red."},
        {"speaker": "Ann", "content": "Then we tell the customer on Thursday."},
        {"speaker": "Cy", "content": "Lunch is at noon today."}],
     "specific_query_list": [
         {"query": "When is the release?", "answer": "The release moves to Friday because the tests are red.",
          "relevant_text_span": [["1", "2"]]}]},
    {"question": "What is the hotel allowance?", "passages": [HOTEL, LAPTOP],
     "answer": "The hotel allowance is 150 EUR per night [1].", "label": True},
    {"question": "What is the hotel allowance?", "passages": [HOTEL, LAPTOP],
     "answer": "Laptops are replaced every three years [2].", "label": False},
]


@pytest.fixture(scope="module")
def one_thread():
    """A model this small only loses to thread hand-offs on 2 busy cores; restored for the rest of the run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base(tmp_path_factory, one_thread) -> Path:
    """A 2-layer random Llama with a byte-level BPE tokenizer (exact round trip of "[1]") and a chat template.

    Weights drawn wider than Llama's 0.02 let a LoRA on a random 32-wide model reach confident
    next-token choices within seconds of training.
    """
    folder = tmp_path_factory.mktemp("tiny-llama")
    corpus = [SYSTEM, "Sources: Question: document standup.txt [1] [2] [3] NOT FOUND", HOTEL, LAPTOP, PARKING,
              *(line.get("query") or line.get("question") or "" for line in LINES),
              *(f"{t['speaker']}: {t['content']}" for t in LINES[3]["meeting_transcripts"])] * 3
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=512, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.5,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "adapter.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    return read_examples(path)


@pytest.fixture(scope="module")
def trained(base, data, tmp_path_factory):
    # A high learning rate and every linear layer: a random 32-wide model must learn an answer in seconds.
    config = AdapterConfig(epochs=EPOCHS, learning_rate=2e-2, kto_learning_rate=1e-3, batch_size=4, max_length=256,
                           target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"))
    steps: list[tuple[str, int, int]] = []
    out = tmp_path_factory.mktemp("adapters") / "answer-adapter"
    result = train_adapter(base, data.sft * 2, data.kto, out, config, progress=lambda *s: steps.append(s))
    return result, steps


def test_files_of_pairs_meetings_and_ratings_become_cited_examples(data):
    assert len(data.sft) == 3 and len(data.kto) == 2
    assert data.skipped == {"pair without an answer": 1}
    hotel, laptop, release = data.sft
    # The reference answer cites the positive passage by the number the prompt gives it.
    for example, positive in ((hotel, HOTEL), (laptop, LAPTOP)):
        (n,) = set(cited_numbers(example.answer))
        assert example.passages[n - 1].text == positive and len(example.passages) == 2
    # A meeting: the gold turns are one passage, cited; a distractor from elsewhere is not.
    cited = {release.passages[n - 1].text for n in cited_numbers(release.answer)}
    gold = "Bob: The release moves to Friday because the tests are red.\nAnn: Then we tell the customer on Thursday."
    assert cited == {gold}
    assert len(release.passages) == 2 and release.passages[0].source == "standup.txt"
    # The prompt is production's: its system text, numbered sources with their names, then the question.
    system, user = messages(release.question, release.passages)
    assert system.content == SYSTEM
    assert "[1] standup.txt\n" in user.content and user.content.endswith("Question: When is the release?")
    assert [e.label for e in data.kto] == [True, False]


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"query": "q" * 5000, "positive": "p", "answer": "a"}), "query is longer"),
    (json.dumps({"query": "q", "positive": "p", "negatives": "n", "answer": "a"}), "negatives must be a list"),
    (json.dumps({"question": "q", "passages": ["p"], "answer": "a [1].", "label": "yes"}), "label must be"),
    (json.dumps({"question": "q", "passages": ["p"], "answer": "a [3].", "label": True}), "beyond its 1 passages"),
    (json.dumps({"meeting_transcripts": [{"speaker": "A", "content": "hi"}],
                 "specific_query_list": [{"query": "q", "answer": "a", "relevant_text_span": [["x", "1"]]}]}),
     "turn number"),
    (json.dumps({"text": "what is this"}), "neither a pair"),
])
def test_hostile_lines_are_refused_naming_their_line(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(LINES[0]) + "\n" + line + "\n")
    with pytest.raises(InvalidRequest, match=rf"bad\.jsonl line 2.*{reason}"):
        read_examples(path)


def test_rated_answers_become_kto_examples_with_the_answer_log_texts():
    def rated(answer_id: str, ups: int, downs: int, passages: tuple[str, ...] = (HOTEL,)) -> RatedAnswer:
        return RatedAnswer(answer_id, "What is the hotel allowance?", passages, ups, downs, datetime(2025, 1, 1))

    records = [rated("a", 2, 0), rated("b", 0, 1), rated("tie", 1, 1), rated("abstained", 0, 2, ())]
    texts = {"a": "It is 150 EUR per night [1].", "b": "Nobody knows [1]."}
    examples = rated_examples(records, texts)
    assert [(e.answer, e.label) for e in examples] == [(texts["a"], True), (texts["b"], False)]
    assert examples[0].passages[0].text == HOTEL
    with pytest.raises(InvalidRequest, match="no answer text"):
        rated_examples([rated("unknown", 1, 0)], texts)


def test_the_trained_adapter_is_a_lora_folder_the_serving_backend_applies(base, data, trained):
    result, _ = trained
    config = json.loads((result.path / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16)
    assert not list(result.path.parent.glob("*.partial"))

    # Served as production serves it, the model now writes the answer it was taught, citation included.
    served = TransformersGenerator(base, adapter=result.path)
    example = data.sft[0]
    assert served.complete(messages(example.question, example.passages), max_tokens=24) == example.answer
    assert "+lora:answer-adapter@" in served.model_id

    # The adapter changes what the model computes.
    tok = AutoTokenizer.from_pretrained(base)
    ids = tok("The hotel allowance is", return_tensors="pt")["input_ids"]
    plain = LlamaForCausalLM.from_pretrained(base).eval()
    with torch.no_grad():
        before = plain(ids).logits
        after = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), result.path).eval()(ids).logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_training_reports_loss_per_epoch_for_both_stages(trained):
    result, steps = trained
    sft = [row for row in result.history if row["stage"] == "sft"]
    kto = [row for row in result.history if row["stage"] == "kto"]
    assert [row["epoch"] for row in sft] == list(range(1, EPOCHS + 1)) and len(kto) == EPOCHS
    assert sft[-1]["loss"] < sft[0]["loss"]
    assert all("kl" in row and "rewards/margins" in row for row in kto)
    assert result.examples == {"sft": 6, "kto_desirable": 1, "kto_undesirable": 1, "skipped": 0}
    assert steps[-1] == ("kto", EPOCHS, EPOCHS) and result.notes == []


def test_the_gate_promotes_an_adapter_that_cites_well_and_refuses_the_rest(base, data, trained):
    result, _ = trained
    champion = evaluate_adapter(base, None, data.sft, max_new_tokens=24)  # the base model alone
    candidate = evaluate_adapter(base, result.path, data.sft, max_new_tokens=24)
    for metrics in (champion, candidate):
        assert 0.0 <= metrics["citation_validity"] <= 1.0 and 0.0 <= metrics["rouge_l"] <= 1.0
    assert candidate["citation_validity"] == 1.0 and candidate["rouge_l"] > 0.9
    assert champion["citation_validity"] < 1.0 and champion["rouge_l"] < candidate["rouge_l"]

    assert adapter_gate(champion, candidate)[0] is True
    promote, reason = adapter_gate(candidate, champion)
    assert not promote and "citation validity" in reason
    promote, reason = adapter_gate(candidate, candidate | {"rouge_l": candidate["rouge_l"] - 0.01})
    assert not promote and "ROUGE-L" in reason


def test_a_template_that_changes_the_prompt_tokens_before_an_answer_is_noticed(base, data):
    tok = AutoTokenizer.from_pretrained(base)
    example = data.sft[0]
    row = chat_row(tok, example.question, fit_answer(example, 256, lambda t: len(tok(t)["input_ids"])),
                   example.answer)
    assert not boundary_differs(tok, row)
    tok.chat_template = TEMPLATE.replace("<assistant>\n{% endif", "<assistant> {% endif")  # ends on a space
    assert boundary_differs(tok, row)


def test_ratings_of_one_kind_skip_kto_and_say_so(base, data, tmp_path):
    liked = [e for e in data.kto if e.label]
    result = train_adapter(base, [], liked * 2, tmp_path / "liked", AdapterConfig(max_steps=1, max_length=256))
    assert result.examples["kto_desirable"] == 0 and result.examples["sft"] == 2
    assert "KTO needs both" in result.notes[0] and (tmp_path / "liked" / "adapter_config.json").exists()


def test_bad_requests_are_refused_before_any_training(base, data, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(InvalidRequest, match="new or empty"):
        train_adapter(base, data.sft, [], tmp_path / "taken")
    with pytest.raises(InvalidRequest, match="not a model folder"):
        train_adapter(tmp_path, data.sft, [], tmp_path / "out")
    with pytest.raises(InvalidRequest, match="no training examples"):
        train_adapter(base, [], [e for e in data.kto if not e.label], tmp_path / "out")


def test_the_adapter_loop_registers_a_passing_adapter_and_the_next_start_answers_with_it(base, data, tmp_path,
                                                                                        embedder, samples):
    """`imp train adapter`'s loop: train, gate against the bare base, register in MLflow, record the champion;
    an engine started afterwards with the transformers backend loads it and says so on its answers."""
    from app import build_engine, build_model_registry
    from core.config import LLMSettings, Settings
    from training.adapter_loop import AdapterLoop, AdapterLoopConfig
    from training.registry import ADAPTER, CHAMPION

    settings = Settings(data_dir=tmp_path / "data", llm=LLMSettings(backend="transformers", path=base,
                                                                    max_new_tokens=24))
    engine = build_engine(settings, embedder=embedder)
    file = tmp_path / "adapter.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in LINES * 2))  # twice: as the fixture trains
    config = AdapterConfig(epochs=EPOCHS, learning_rate=2e-2, kto_learning_rate=1e-3, batch_size=4, max_length=256,
                           target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"))
    registry = build_model_registry(settings)
    loop = AdapterLoop(engine, registry, base=base, configured_adapter=None, device="cpu", ray=None,
                       config=AdapterLoopConfig(feedback=False, max_new_tokens=24), workdir=tmp_path / "work",
                       train_config=config)
    (tmp_path / "work").mkdir()
    try:
        outcome = loop.run(file, file)
    finally:
        engine.close()
    assert outcome.promoted, outcome.reason
    assert outcome.metrics["candidate"]["citation_validity"] == 1.0
    assert outcome.metrics["candidate"]["rouge_l"] >= outcome.metrics["champion"]["rouge_l"]
    assert registry.alias(ADAPTER, CHAMPION) == outcome.version == "1"
    assert (registry.materialize(ADAPTER, "1") / "adapter_config.json").is_file()

    restarted = build_engine(settings, embedder=embedder)
    try:
        restarted.ingest([samples])
        answer = restarted.ask("how much is the hotel allowance in Europe?")
        assert answer.adapter == "1"
    finally:
        restarted.close()
