"""The lost-answer lookup's judgement: which chat in CCAI's list, if any, is a possibly delivered
send's own, and whether "none" may be believed.

A chat is taken for the send's own only when everything the bridge knows about its request agrees:
the ticket id, a creation time at or after the attempt left (on CCAI's clock, see
:meth:`bridge.ccai.client.CCAIClient.find_chats`), the chat type, and no other send having recorded
it. The chat list shows neither the customer's number nor the text, so when two chats could be ours,
or another send of the same ticket may own the one found, the bridge cannot be sure: the send ends
*unknown* rather than claim a chat that may be another's, or send again. "Nothing found" is believed
only once the tenant has shown that its chat list carries our ticket id (:mod:`bridge.lookup_proof`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bridge.ccai.client import ChatSearch, ListedChat
from bridge.lookup_proof import Proof

# CCAI's times are whole seconds, its clock is read from whole-second Date headers, and the request
# takes a moment to arrive: a chat created this much before the attempt left may still be its own.
TOLERANCE_SECONDS = 5.0


@dataclass(frozen=True)
class Found:
    chat: ListedChat


@dataclass(frozen=True)
class NotFound:
    """The whole window was read and holds no chat of this send's: sending again is safe."""


@dataclass(frozen=True)
class Unsure:
    """Nothing can be concluded: end the send unknown (``wait`` > 0: look again later instead)."""

    reason: str
    wait: float = 0.0


Judgement = Found | NotFound | Unsure


def judge(
    search: ChatSearch,
    *,
    since: float,
    known: Collection[str],
    chat_type: str | None,
    others_unresolved: int,
    proof: Proof,
    ago: float,
) -> Judgement:
    """What the search means for the send. ``known``: chats other sends recorded; ``others_unresolved``:
    other sends of the same ticket that may also have reached CCAI without an answer; ``since``: when the
    attempt left, on the store's clock; ``ago``: seconds since then."""
    unknown = [c for c in search.chats if c.id not in known]
    if search.departed_at is not None:
        # CCAI's own clock says when the attempt left: a chat created before that is not its.
        recent = [c for c in unknown if c.created_at is None or c.created_at >= search.departed_at - TOLERANCE_SECONDS]
    else:
        # No Date header to tell the clocks apart: a chat that seems older than the attempt may be
        # another integration's, or ours under a clock difference. Not to be claimed, nor sent past.
        recent = [c for c in unknown if c.created_at is None or c.created_at >= since - TOLERANCE_SECONDS]
        if len(unknown) > len(recent):
            older = ", ".join(c.id for c in unknown if c not in recent)
            return Unsure(
                f"CCAI Platform lists chat(s) for this ticket ({older}) that seem older than the unanswered attempt, "
                "and sent no Date header to compare its clock with the bridge's: they may be another integration's "
                "or this send's. Not claimed, and not sent again."
            )
    if len(recent) > 1:
        ids = ", ".join(c.id for c in recent)
        return Unsure(
            f"CCAI Platform's chat list shows several chats for this ticket created after the unanswered attempt "
            f"left ({ids}) and cannot tell which, if any, is this send's; it was not sent again."
        )
    if recent:
        chat = recent[0]
        if chat_type and chat.chat_type and chat.chat_type != chat_type:
            return Unsure(
                f"The only chat CCAI Platform lists for this ticket since the unanswered attempt left, {chat.id}, is "
                f"of another type ({chat.chat_type}) than the bridge's ({chat_type}): it may be another "
                "integration's; not claimed, and not sent again."
            )
        if others_unresolved:
            return Unsure(
                f"Chat {chat.id} may be this send's or that of another unanswered send of the same ticket; the chat "
                "list cannot tell them apart, so it was not claimed and not sent again."
            )
        return Found(chat)
    if not proof.trusted:
        return Unsure(
            "No chat was found in CCAI Platform's list for the unanswered attempt, but "
            f"{proof.detail}. The SMS may have reached the customer: not sent again."
        )
    if ago < proof.max_delay:
        return Unsure(
            f"No chat found yet, but this tenant has taken up to {proof.max_delay:.0f} s to show our ticket id; "
            "looking again later.",
            wait=proof.max_delay - ago + 1.0,
        )
    return NotFound()
