"""The lost-answer lookup's judgement (R3, issue 20 item 5): which listed chat is the send's own."""

from __future__ import annotations

from bridge import lookup
from bridge.ccai.client import ChatSearch, ListedChat
from bridge.lookup_proof import Evidence, Proof, judge

T = 1_800_000_000.0
PROVEN = judge([Evidence(str(n), T - 900 + n, T - 899, T - 899, T - 899 + n % 2) for n in range(3)])


def chat(chat_id: str, created: float, chat_type: str = "SMS") -> ListedChat:
    return ListedChat(id=chat_id, status="selecting", out_ticket_id="C1", chat_type=chat_type, created_at=created)


def run(*chats: ListedChat, departed: float | None = T, proof: Proof = PROVEN, others: int = 0) -> lookup.Judgement:
    search = ChatSearch(chats=list(chats), departed_at=departed, searched_from=T - 120)
    return lookup.judge(search, since=T, known=set(), chat_type="SMS", others_unresolved=others, proof=proof, ago=30)


def test_a_chat_created_before_the_attempt_left_on_ccais_clock_is_not_its() -> None:
    assert PROVEN.trusted
    assert isinstance(run(chat("7", T - 60)), lookup.NotFound)
    assert run(chat("7", T - 60), chat("8", T + 1)) == lookup.Found(chat("8", T + 1))


def test_whatever_cannot_be_told_apart_ends_unknown() -> None:
    assert isinstance(run(chat("8", T + 1), chat("9", T + 2)), lookup.Unsure)  # two candidates
    assert isinstance(run(chat("8", T + 1, "Messaging (API)")), lookup.Unsure)  # another channel
    assert isinstance(run(chat("8", T + 1), others=1), lookup.Unsure)  # another unanswered send
    assert isinstance(run(chat("7", T - 60), departed=None), lookup.Unsure)  # no Date header to compare


def test_nothing_found_is_believed_only_once_proven() -> None:
    unproven = judge([])
    judged = run(proof=unproven)
    assert isinstance(judged, lookup.Unsure)
    assert judged.wait == 0
    assert "has not shown that its chat list carries our ticket id" in judged.reason
    slow = Proof("proven", "", 3, max_delay=45)
    later = run(proof=slow)
    assert isinstance(later, lookup.Unsure)
    assert later.wait == 16.0  # looked up again once the longest delay seen has passed
