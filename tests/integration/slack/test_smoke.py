from tests.fakes import slack_payloads as sp
from tests.integration.slack.conftest import blocks_text


def test_mention_answered_in_thread(rig, indexed):
    ev = sp.app_mention("<@UIMPBOT> how much is the hotel allowance in Europe?")
    assert rig.event(ev) == 200
    [msg] = rig.posted("C0GENERAL")
    print(blocks_text(msg))
    assert msg["thread_ts"] == ev["ts"]
