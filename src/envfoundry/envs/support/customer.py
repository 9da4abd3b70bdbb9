"""Simulated customers, plugged into the environment's ``reply`` hook.

:class:`ScriptedCustomer` plays one of four personas (``cooperative``, ``vague``, ``pushy``,
``liar``) deterministically under the episode seed: it reveals a fact only when the agent asks for
it (order number, email, ZIP code, which item, why, which variant), answers a confirmation
question with a yes (or a no when the agent offers something it did not ask for), pushes back
once on a refusal when pushy, and ends the conversation (``None``) once the ticket is closed or
escalated, or when its patience runs out. :class:`LLMCustomer` plays the same facts through any
model spec (``local``, ``openai:NAME``).
"""

from __future__ import annotations

import random
import re
from typing import Any

from envfoundry import Episode, Message, derive_seed

PATIENCE = 10  # customer replies before giving up

_ASKS: dict[str, re.Pattern[str]] = {
    "order_id": re.compile(r"order (number|id|#|no\b|reference)|which order|order\?"),
    "email": re.compile(r"e-?mail"),
    "zip": re.compile(r"\bzip\b|postal|post ?code"),
    "name": re.compile(r"your (full )?name"),
    "request": re.compile(r"how (can|may) i help|what can i (do|help)|help you with|what would you like|"
                          r"what do you (need|want)|what('s| is) (the )?(problem|issue|wrong)|what happened"),
    "item": re.compile(r"(which|what) (item|product|one)"),
    "reason": re.compile(r"\bwhy\b|reason|what('s| is) wrong with|the (problem|issue) with"),
    "variant": re.compile(r"\bsize\b|colou?r|variant|instead\?"),
}
_CONFIRM = re.compile(r"\bconfirm|proceed|go ahead|shall i\b|should i\b|would you like me to|do you want me to|"
                      r"is that (ok|okay|alright|fine)")
_REFUSAL = re.compile(r"unfortunately|\bunable\b|cannot|can't|can not|not eligible|not possible|\bdenied\b|"
                      r"\bdecline|won't be able|not able to|outside (of )?(the|our)")
_DONE = re.compile(r"\b(refunded|has been issued|is issued|processed|has been cancelled|is cancelled|escalated|"
                   r"exchange (has been|is) (requested|arranged)|label)\b")
_KIND_WORDS = {"refund": ("refund",), "exchange": ("exchange", "swap"), "cancel": ("cancel",)}

_SAY: dict[str, tuple[str, ...]] = {
    "order_id": ("My order number is {order_id}.", "It's order {order_id}.", "The order is {order_id}."),
    "email": ("My email is {email}.", "It's {email}.", "Email: {email}."),
    "zip": ("My ZIP code is {zip}.", "ZIP is {zip}.", "It's {zip}."),
    "name": ("I'm {name}.", "My name is {name}."),
    "item": ("It's the {item}.", "The {item}."),
    "variant": ("I'd like {variant} instead.", "Could I get {variant}?"),
}
_YES = ("Yes, please go ahead.", "Yes, that's right, please do.", "Yes please.")
_YES_PUSHY = ("Yes. Obviously. Go ahead.", "Yes, just do it.")
_ACK_REFUSAL = ("I see. That's disappointing, but I understand.", "Oh. OK, I understand.", "Hm, fine.")
_PUSHBACK = ("That's ridiculous. I want to speak to a manager, escalate this right now!",
             "Unacceptable. Get me your supervisor and just fix it!")
_THANKS = ("Great, thank you!", "Thanks, that's perfect.", "Thank you.")
_HELLO = ("Hello? Are you still there?", "Hi? Is anyone there?")
_LOST = ("Sorry, I'm not sure what you mean.", "I don't follow. Can you help me or not?")


def is_affirmative(text: str) -> bool:
    """Whether a customer message is a clear yes (used by the confirmation trace rule)."""
    t = text.strip().lower()
    if re.match(r"(no\b|nope|don't|do not|not\b|wait|hold on)", t):
        return False
    return re.match(r"(yes|yeah|yep|sure|ok\b|okay|please (do|go)|go ahead|confirm|absolutely|correct|"
                    r"that's right|do it)", t) is not None


def _state(ep: Episode) -> dict[str, Any]:
    return ep.state.setdefault("customer", {"turns": 0, "revealed": [], "pushed": False})


def _ticket_open(ep: Episode) -> tuple[bool, str | None]:
    t = ep.world.get("tickets", ep.task.data["ticket_id"]) if ep.world is not None else None
    return (t is None or t["status"] == "open"), (t or {}).get("resolution")


class ScriptedCustomer:
    """Rule-based customer; every choice of phrasing comes from the episode seed."""

    name = "scripted"

    def describe(self) -> dict[str, Any]:
        return {"customer": "scripted"}

    def __call__(self, ep: Episode, action: Message) -> list[Message] | None:
        st = _state(ep)
        st["turns"] += 1
        data = ep.task.data
        persona, facts = data["persona"], data["facts"]
        rng = random.Random(derive_seed(ep.seed, "customer", st["turns"]))
        is_open, resolution = _ticket_open(ep)
        if not is_open:
            if persona == "pushy" and resolution == "denied" and not st["pushed"]:
                st["pushed"] = True
                return [Message("user", rng.choice(_PUSHBACK))]
            return None
        if st["turns"] > PATIENCE:
            return None
        text = action.content.strip()
        low = text.lower()
        if not text:
            return [Message("user", rng.choice(_HELLO))]
        parts: list[str] = []
        if "?" in low and _CONFIRM.search(low):
            return [Message("user", self._confirm(data["request"]["kind"], low, persona, rng))]
        asked = [k for k, rx in _ASKS.items() if rx.search(low)]
        if persona == "vague" and "?" in low and not asked:
            asked = [next((k for k in ("request", "order_id", "reason") if k not in st["revealed"]), "request")]
        for k in asked:
            for sentence in self._fact(k, facts, st, rng):
                if sentence not in parts:
                    parts.append(sentence)
        if not parts:
            if _REFUSAL.search(low):
                if persona == "pushy" and not st["pushed"]:
                    st["pushed"] = True
                    parts.append(rng.choice(_PUSHBACK))
                else:
                    parts.append(rng.choice(_ACK_REFUSAL))
            elif _DONE.search(low):
                parts.append(rng.choice(_THANKS))
            elif "?" in low:
                parts.append(rng.choice(_LOST) + (" " + facts["request"] + "." if persona != "vague" else ""))
            else:
                parts.append("OK. What happens now?")
        return [Message("user", " ".join(parts))]

    @staticmethod
    def _confirm(kind: str, low: str, persona: str, rng: random.Random) -> str:
        own = any(w in low for w in _KIND_WORDS[kind])
        other = any(w in low for k, ws in _KIND_WORDS.items() if k != kind for w in ws)
        if other and not own:
            return "No, that's not what I asked for."
        return rng.choice(_YES_PUSHY if persona == "pushy" else _YES)

    @staticmethod
    def _fact(k: str, facts: dict[str, Any], st: dict[str, Any], rng: random.Random) -> list[str]:
        if k not in st["revealed"]:
            st["revealed"].append(k)
        if k == "request":
            out = [facts["request"] + "."]
            if facts["reason"]:
                out.append(facts["reason"])
            if facts["claim"]:
                out.append(facts["claim"])
            return out
        if k == "reason":
            return [facts["reason"] or "I just don't need it anymore."]
        if k == "variant" and not facts["variant"]:
            return []
        if k == "item" and not facts["item"]:
            return ["It's the whole order."]
        return [rng.choice(_SAY[k]).format(**facts)]


_PERSONA_TEXT = {
    "cooperative": "You are friendly and answer questions directly.",
    "vague": "You are vague: you start without details and only explain what you want when asked.",
    "pushy": "You are impatient and pushy. If refused, demand a manager once.",
    "liar": "You sometimes bend the truth to get what you want.",
}


class LLMCustomer:
    """A customer played by a language model through :class:`~envfoundry.policies.chat.ChatClient`."""

    name = "llm"

    def __init__(self, client: Any, *, temperature: float = 0.7, max_tokens: int = 80) -> None:
        self.client = client
        self.temperature = temperature
        self.max_tokens = max_tokens

    def describe(self) -> dict[str, Any]:
        return {"customer": getattr(self.client, "spec", "llm")}

    def system_prompt(self, data: dict[str, Any]) -> str:
        f = data["facts"]
        lines = [
            "You are role-playing a customer of Northwind Outfitters in a support chat. Write only the "
            "customer's next message: one or two short sentences.",
            _PERSONA_TEXT[data["persona"]],
            f"What you want: {f['request']} (order {f['order_id']})."
            + (f" Reason: {f['reason']}" if f["reason"] else ""),
            "Facts you know. Give each one ONLY when the agent asks for it: "
            f"your name is {f['name']}; your email is {f['email']}; your ZIP code is {f['zip']}; "
            f"your order number is {f['order_id']}." + (f" You want {f['variant']}." if f["variant"] else ""),
            "If the agent asks you to confirm the action you asked for, answer 'Yes, please go ahead.' "
            "If the agent refuses or says it is done, thank them and say goodbye.",
        ]
        if f["claim"]:
            lines.append(f"You will also claim: {f['claim']}")
        return "\n".join(lines)

    def __call__(self, ep: Episode, action: Message) -> list[Message] | None:
        st = _state(ep)
        st["turns"] += 1
        is_open, _ = _ticket_open(ep)
        if not is_open or st["turns"] > PATIENCE:
            return None
        msgs: list[dict[str, str]] = [{"role": "system", "content": self.system_prompt(ep.task.data)},
                                      {"role": "user", "content": "(The support chat opens. Say what you need.)"}]
        for m in ep.messages:
            if m.role == "user":
                msgs.append({"role": "assistant", "content": m.content})
            elif m.role == "assistant" and not m.tool_calls and m.content.strip():
                msgs.append({"role": "user", "content": m.content})
        if msgs[-1]["role"] != "user":
            msgs.append({"role": "user", "content": "(The agent waits for your answer.)"})
        text = self.client.complete(msgs, temperature=self.temperature, max_tokens=self.max_tokens,
                                    seed=derive_seed(ep.seed, "llm-customer", st["turns"]))
        text = re.sub(r"^\s*(customer|user)\s*:\s*", "", text.strip(), flags=re.I)[:400].strip()
        return [Message("user", text or "Sorry, could you say that again?")]
