"""Phrase rules of the extractive minutes: decisions, action items, due dates, open questions (no models)."""

from __future__ import annotations

import pytest

from core.minutes.rules import (
    clean,
    commitment,
    decision_text,
    find_actions,
    find_decisions,
    find_due,
    find_open_questions,
    question_text,
    request,
)
from core.models import Meeting, Turn

MONDAY = "2026-03-02"
SPEAKERS = ["Anna Schmidt", "Ben", "Chloe"]


def meeting(*lines: tuple[str, str], date: str | None = MONDAY) -> Meeting:
    return Meeting(turns=[Turn(i, who, text) for i, (who, text) in enumerate(lines, 1)], date=date)


@pytest.mark.parametrize(("sentence", "due_text", "due"), [
    ("I will send the report by Friday.", "by Friday", "2026-03-06"),
    ("Chloe will draft the script by next Wednesday.", "by next Wednesday", "2026-03-11"),
    ("The pilot report is due by the end of June.", "by the end of June", "2026-06-30"),
    ("We need the numbers before March 3rd.", "before March 3rd", "2026-03-03"),
    ("I'll ping the supplier tomorrow.", "tomorrow", "2026-03-03"),
    ("Let's have it ready by the end of the month.", "by the end of the month", "2026-03-31"),
    ("Send it over in two weeks.", "in two weeks", "2026-03-16"),
    ("Ben will book the room this Friday.", "this Friday", "2026-03-06"),
    ("Please sign it by March 3rd, 2026.", "by March 3rd, 2026", "2026-03-03"),
    ("The cells arrive on 2026-04-15.", "on 2026-04-15", "2026-04-15"),
])
def test_due_phrases_resolve_against_the_meeting_date(sentence, due_text, due):
    assert find_due(sentence, MONDAY) == (due_text, due)


def test_without_a_meeting_date_only_absolute_dates_resolve():
    assert find_due("I will send the report by Friday.") == ("by Friday", None)
    assert find_due("We meet again next week.") == ("next week", None)
    assert find_due("Please sign it by March 3rd, 2026.") == ("by March 3rd, 2026", "2026-03-03")


@pytest.mark.parametrize("sentence", [
    "We may send it later.",  # "may" is a verb, not the month
    "Friday's demo went well.",  # a weekday without "by"/"on"/"next" is no deadline
    "By the way, the cells look fine.",
])
def test_sentences_without_a_deadline(sentence):
    assert find_due(sentence, MONDAY) is None


def test_i_will_is_an_action_for_the_speaker_with_its_deadline():
    item = commitment("I will send the report by Friday.", "Ben", SPEAKERS, MONDAY)
    assert (item.task, item.owner, item.due_text, item.due) == ("Send the report", "Ben", "by Friday", "2026-03-06")


def test_a_named_person_owns_the_task_and_is_matched_to_the_attendee():
    item = commitment("Then Anna will draft the press release by next Wednesday.", "Ben", SPEAKERS, MONDAY)
    assert (item.owner, item.task, item.due) == ("Anna Schmidt", "Draft the press release", "2026-03-11")
    elitr = commitment("[PERSON6] will download and prepare the corpus.", "PERSON3", ["PERSON3", "PERSON6"])
    assert (elitr.owner, elitr.task) == ("PERSON6", "Download and prepare the corpus")


def test_we_will_is_a_team_action_without_an_owner():
    item = commitment("We'll prepare the budget sheet by the end of the month.", "Anna Schmidt", SPEAKERS, MONDAY)
    assert (item.owner, item.task, item.due) == (None, "Prepare the budget sheet", "2026-03-31")


def test_action_item_prefix_names_the_owner():
    item = commitment("Action item for Ben: update the wiki page by Thursday.", "Anna Schmidt", SPEAKERS, MONDAY)
    assert (item.owner, item.task, item.due_text, item.due) == ("Ben", "Update the wiki page", "by Thursday",
                                                                "2026-03-05")


@pytest.mark.parametrize("sentence", [
    "We will go with the new cells.",  # a decision, not an action
    "I'll be honest with you, the results are mixed.",
    "I'll make sure.",
    "The battery will last longer in the cold.",
    "We need to talk about the cells today.",  # "need to" is an action only with a deadline ("by ...")
    "If I will have time, who knows.",
    "Will you send it?",
])
def test_not_action_items(sentence):
    assert commitment(sentence, "Ben", SPEAKERS, MONDAY) is None


def test_someone_needs_to_meet_a_deadline():
    item = commitment("Ben needs to finish the slides by Thursday.", "Chloe", SPEAKERS, MONDAY)
    assert (item.owner, item.task, item.due) == ("Ben", "Finish the slides", "2026-03-05")


@pytest.mark.parametrize(("sentence", "text"), [
    ("Decision: we go with the LG cells.", "We go with the LG cells."),
    ("So, um, we decided to use the new supplier.", "We decided to use the new supplier."),
    ("We decided not to use the old charger.", "We decided not to use the old charger."),
    ("We will go with the new cells for the pilot.", "We will go with the new cells for the pilot."),
    ("OK, let's go with option B for the housing.", "Let's go with option B for the housing."),
    ("The plan is to launch the pilot in May.", "The plan is to launch the pilot in May."),
    ("It's been agreed that the budget stays at twenty thousand.",
     "It's been agreed that the budget stays at twenty thousand."),
])
def test_decisions(sentence, text):
    assert decision_text(sentence) == text


@pytest.mark.parametrize("sentence", [
    "We haven't decided yet.",
    "Did we agree on the budget?",
    "If we agreed on that, the launch moves.",
    "The final decision is not made yet.",
    "We need to decide which supplier to use.",
    "I don't know why we decided that.",
    "We agreed that actually the.",  # a broken-off sentence states nothing
])
def test_not_decisions(sentence):
    assert decision_text(sentence) is None


def test_a_proposal_agreed_in_the_next_turn_is_a_decision_with_both_quotes():
    m = meeting(("Ben", "The pilot results come in April. Should we postpone the press release until then?"),
                ("Anna Schmidt", "Agreed, that makes sense."))
    [d] = find_decisions(m)
    assert d.text == "Postpone the press release until then"
    assert [e.quote for e in d.evidence] == ["Should we postpone the press release until then?",
                                             "Agreed, that makes sense."]
    assert [e.turn for e in d.evidence] == [1, 2]


def test_a_proposal_nobody_agreed_to_is_no_decision():
    m = meeting(("Ben", "Should we postpone the press release?"), ("Anna Schmidt", "Hmm, I'd rather not."))
    assert find_decisions(m) == []


def test_a_request_becomes_an_action_only_when_accepted():
    asked = ("Anna Schmidt", "Chloe, will you send the budget report to finance by Friday?")
    assert find_actions(meeting(asked, ("Ben", "Let's move on to the launch."))) == []
    assert find_actions(meeting(asked, ("Chloe", "No, I can't this week."))) == []
    [item] = find_actions(meeting(asked, ("Chloe", "Sure, will do.")))
    assert (item.owner, item.task, item.due_text, item.due) == ("Chloe", "Send the budget report to finance",
                                                                "by Friday", "2026-03-06")
    assert [e.quote for e in item.evidence] == [asked[1], "Sure, will do."]


def test_please_with_a_deadline_is_an_action_for_the_person_addressed():
    [item] = find_actions(meeting(("Anna Schmidt", "The agency sent the contract."),
                                  ("Ben", "Anna, please sign the agency contract by the end of the month.")))
    assert (item.owner, item.task, item.due) == ("Anna Schmidt", "Sign the agency contract", "2026-03-31")
    assert request("Could you please check the charger firmware?") == (None, "Check the charger firmware")


def test_action_evidence_is_the_sentence_verbatim():
    text = "Okay. So, uh, I will send the updated battery specification to the supplier by Friday. Thanks."
    [item] = find_actions(meeting(("Ben", text)))
    assert item.evidence[0].quote == "So, uh, I will send the updated battery specification to the supplier by Friday."
    assert item.evidence[0].quote in text and item.owner == "Ben"


def test_questions_answered_in_the_next_turns_are_not_open():
    q = "Can the supplier deliver five hundred cells before April?"
    answered = meeting(("Ben", q), ("Chloe", "Yes, they confirmed it yesterday."))
    assert find_open_questions(answered) == []
    answered_later = meeting(("Ben", q), ("Anna Schmidt", "Hmm."),
                             ("Chloe", "The supplier said four hundred is the maximum for March."))
    assert find_open_questions(answered_later) == []
    unanswered = meeting(("Ben", q), ("Anna Schmidt", "Hmm."), ("Chloe", "Okay."),
                         ("Ben", "The supplier said four hundred is the maximum for March."))
    [(open_q, flagged)] = find_open_questions(unanswered)
    assert open_q.text == q and open_q.evidence[0].turn == 1 and not flagged


def test_i_dont_know_is_no_answer_and_open_words_flag_a_statement():
    m = meeting(("Ben", "Who pays for the extra test chamber time?"), ("Chloe", "I don't know, honestly."),
                ("Anna Schmidt", "We still need to figure out the budget for paid social media ads."))
    found = find_open_questions(m)
    assert [(q.text, flagged) for q, flagged in found] == [
        ("Who pays for the extra test chamber time?", False),
        ("We still need to figure out the budget for paid social media ads.", True)]


@pytest.mark.parametrize("sentence", ["It's fine, right?", "Hm?", "What?", "Okay, so shall we?"])
def test_tag_and_short_questions_are_not_questions(sentence):
    assert question_text(sentence) is None


def test_clean_drops_fillers_markup_and_repeats():
    assert clean("Um, so, uh, we we decided <laugh/> to use the {disfmarker} new cells -.") == \
        "We decided to use the new cells."
    assert clean("So I think it 's good .") == "I think it's good."


def test_a_spoken_decision_transcribed_with_a_comma_is_a_decision():
    # Whisper writes the spoken "Decision: ..." as "Decision, ...".
    assert decision_text("Decision, we keep the pilot running until the end of June.") == \
        "We keep the pilot running until the end of June."
    assert decision_text("Agreed, but we still need to check the budget.") is None


# A spoken cue reaches the rules with whatever punctuation the recogniser chose for the pause after it:
# Whisper on one x86 CPU writes "Decision, we keep …", on another "Decision. We keep …" (issue 11).
PILOT = "We keep the pilot running until the end of June."


@pytest.mark.parametrize("said", [
    "Decision: we keep the pilot running until the end of June.",
    "Decision, we keep the pilot running until the end of June.",
    "Decision. We keep the pilot running until the end of June.",
    "Decision - we keep the pilot running until the end of June.",
    "Decision \u2014 we keep the pilot running until the end of June.",
    "Decision; we keep the pilot running until the end of June.",
    "Decision... We keep the pilot running until the end of June.",
    "Decision! We keep the pilot running until the end of June.",
    "Decision we keep the pilot running until the end of June.",
    "The final decision. We keep the pilot running until the end of June.",
    "Okay. Decision. We keep the pilot running until the end of June. Thanks.",
])
def test_a_spoken_decision_is_found_whatever_the_punctuation(said):
    [d] = find_decisions(meeting(("Anna Schmidt", said)))
    assert d.text == PILOT
    [e] = d.evidence
    assert e.quote in said and e.quote.startswith(("Decision", "The final")) and e.quote.endswith("June.")


def test_a_decision_cue_transcribed_as_a_segment_of_its_own_carries_to_the_same_speakers_next_segment():
    m = meeting(("Anna Schmidt", "Decision."), ("Anna Schmidt", f"{PILOT} And we add two robots in May."),
                ("Ben", "Good."))
    [d] = find_decisions(m)
    assert d.text == PILOT
    assert [(e.turn, e.quote) for e in d.evidence] == [(1, "Decision."), (2, PILOT)]
    # Another speaker's next words are not what the cue introduced.
    assert find_decisions(meeting(("Anna Schmidt", "Decision."), ("Ben", PILOT))) == []


@pytest.mark.parametrize("said", [
    "Action item for Ben: order the two extra robots by Friday.",
    "Action item for Ben, order the two extra robots by Friday.",
    "Action item for Ben. Order the two extra robots by Friday.",
    "Action item for Ben - order the two extra robots by Friday.",
    "Action item for Ben order the two extra robots by Friday.",
    "Action item. Ben will order the two extra robots by Friday.",
    "Action item, Ben will order the two extra robots by Friday.",
    "Action point: Ben will order the two extra robots by Friday.",
])
def test_a_spoken_action_item_is_found_whatever_the_punctuation(said):
    [item] = find_actions(meeting(("Anna Schmidt", said), ("Ben", "Agreed.")))
    assert (item.task, item.owner, item.due_text, item.due) == ("Order the two extra robots", "Ben", "by Friday",
                                                                "2026-03-06")
    assert [e.quote for e in item.evidence] == [said]


@pytest.mark.parametrize("said", ["To do: order the two extra robots by Friday.",
                                  "To do. Order the two extra robots by Friday.",
                                  "To-do, order the two extra robots by Friday."])
def test_a_spoken_to_do_is_an_action_item_without_an_owner(said):
    [item] = find_actions(meeting(("Anna Schmidt", said)))
    assert (item.task, item.owner, item.due) == ("Order the two extra robots", None, "2026-03-06")


def test_an_action_cue_transcribed_as_a_segment_of_its_own_carries_to_the_next_segment():
    m = meeting(("Anna Schmidt", "Action item for Ben."), ("Anna Schmidt", "Order the two extra robots by Friday."))
    [item] = find_actions(m)
    assert (item.task, item.owner, item.due) == ("Order the two extra robots", "Ben", "2026-03-06")
    assert [(e.turn, e.quote) for e in item.evidence] == [(1, "Action item for Ben."),
                                                          (2, "Order the two extra robots by Friday.")]


@pytest.mark.parametrize("said", [
    "Agreed. We keep the pilot running until the end of June.",  # a reply, not a cue
    "Agreed, but we still need to check the budget.",
    "Decisions are hard. We keep trying.",
    "Decision? We keep the pilot running until the end of June.",
    "That decision. We keep the pilot running until the end of June.",
])
def test_words_that_are_not_a_decision_cue(said):
    assert find_decisions(meeting(("Anna Schmidt", said))) == []
