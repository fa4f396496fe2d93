"""The R1 prompt rules: what DeepSeek-R1 distills expect to be sent.

Pure functions, stdlib only (imported on the CLI's hot path). The rules, from DeepSeek's usage
recommendations and the model's chat template:

- no system role: any system text is pasted before the first user message;
- for math, the user message ends with the directive to reason step by step and box the answer,
  in the question's language;
- earlier assistant turns are sent as their final answer only (the text after the last ``</think>``,
  which is all the chat template keeps anyway);
- the answer starts inside a think block: the current template already ends the generation prompt
  with ``<think>\\n``; for a template that does not, the caller can prefill it
  (:func:`build_messages` with ``prefill_think=True`` plus :func:`request_extras`);
- temperature 0.5-0.7, 0.6 recommended (top_p 0.95).
"""

from __future__ import annotations

import math as _math
import re

MATH_DIRECTIVE_EN = "Please reason step by step, and put your final answer within \\boxed{}."
MATH_DIRECTIVE_ZH = "请逐步推理，并将最终答案放在\\boxed{}内。"
THINK_PREFIX = "<think>\n"
THINK_CLOSE = "</think>"
ASSISTANT_MARKER = "<｜Assistant｜>"  # fullwidth bars, as in the tokenizer

# The one source of sampling defaults: DeepSeek's evaluation setup and the model's generation_config.json
# (the article's top_p 0.9 is not theirs).
DEFAULT_TEMPERATURE = 0.6
TEMPERATURE_RANGE = (0.5, 0.7)
DEFAULT_TOP_P = 0.95

_DIRECTIVES = (MATH_DIRECTIVE_EN, MATH_DIRECTIVE_ZH)

# CJK Unified Ideographs, Extension A, Compatibility Ideographs, Extensions B-F (supplementary planes).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2EBEF),
    (0x30000, 0x3134F),
)
# A Latin word of 3+ letters that is not a LaTeX command (\frac, \sqrt...). Shorter runs are mostly
# variables and function names in formulas (x, ax, bx, f, sin is 3 but rare next to CJK).
_LATIN_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_chinese(text: str) -> bool:
    """True when the text is mostly Chinese.

    Compares CJK ideographs (one unit each) with Latin words of three or more letters outside
    LaTeX commands: counting letters instead would let a formula like ``f(x)=ax^2+bx+c`` outvote
    the Chinese around it, and one English word is worth about one Chinese character, not five.
    """
    if not text:
        return False
    cjk = sum(1 for ch in text if _is_cjk(ch))
    if cjk == 0:
        return False
    words = len(_LATIN_WORD.findall(text))
    return cjk >= words


def add_directive(question: str) -> str:
    """Append the math directive in the question's language, on a new line, once.

    If either directive (English or Chinese) is already in the question, it is returned unchanged.
    Trailing whitespace of the question is dropped before the directive so the result is the same
    however the question ended.
    """
    if any(d in question for d in _DIRECTIVES):
        return question
    directive = MATH_DIRECTIVE_ZH if is_chinese(question) else MATH_DIRECTIVE_EN
    body = question.rstrip()
    if not body:
        return directive
    return f"{body}\n{directive}"


def fold_system(system: str | None, first_user_text: str) -> str:
    """Put the system text before the first user message, with a blank line between.

    R1 models are meant to get no system prompt; its text goes into the user message instead.
    ``None`` or blank system text leaves the user text unchanged.
    """
    if system is None or not system.strip():
        return first_user_text
    return f"{system.strip()}\n\n{first_user_text}"


def final_only(content: str | None) -> str:
    """The text after the last ``</think>``: what DeepSeek's chat template keeps of an assistant turn.

    Without a ``</think>`` the whole content is kept (as the template does). ``None`` gives "".
    """
    if not content:
        return ""
    if THINK_CLOSE in content:
        return content.rsplit(THINK_CLOSE, 1)[1]
    return content


def build_messages(
    turns: list[dict],
    question: str,
    *,
    system: str | None = None,
    math: bool = True,
    prefill_think: bool = False,
) -> list[dict]:
    """The OpenAI ``messages`` for a new question after earlier turns, following the R1 rules.

    ``turns`` are earlier ``{"role": "user" | "assistant", "content": str}`` messages exactly as the
    user typed them and as the model answered. The result never has a ``system`` role: ``system``
    is folded into the first user message. With ``math`` each user message gets the directive;
    assistant contents are reduced to their final answer. With ``prefill_think`` a last assistant
    message ``"<think>\\n"`` is appended; send it with :func:`request_extras` (``True``).

    The input is not modified. Raises ValueError for a role other than user/assistant.
    """
    messages: list[dict] = []
    system_pending = True
    for turn in [*turns, {"role": "user", "content": question}]:
        role = turn.get("role")
        content = turn.get("content")
        if role == "user":
            text = content if isinstance(content, str) else ("" if content is None else str(content))
            if math:
                text = add_directive(text)
            if system_pending:
                text = fold_system(system, text)
                system_pending = False
            messages.append({"role": "user", "content": text})
        elif role == "assistant":
            text = content if isinstance(content, str) or content is None else str(content)
            messages.append({"role": "assistant", "content": final_only(text)})
        else:
            raise ValueError(f"unsupported role in chat history: {role!r} (expected 'user' or 'assistant')")
    if prefill_think:
        messages.append({"role": "assistant", "content": THINK_PREFIX})
    return messages


# Byte-level BPE (GPT-2 / Qwen) spells whitespace bytes as printable characters in token strings:
# byte b < 33 is chr(256 + b). /tokenize's token_strs come from convert_ids_to_tokens, so "\n" is "Ċ".
_BPE_WHITESPACE = str.maketrans({chr(256 + b): chr(b) for b in (9, 10, 11, 12, 13, 32)})
_OPEN_THINK_AT_END = re.compile(r"<think>\s*\Z")


def template_opens_think(rendered_prompt: str) -> bool:
    """True if the rendered prompt already ends inside an opened think block.

    ``rendered_prompt`` is the prompt a chat request renders to, e.g. vLLM ``/tokenize``'s
    ``token_strs`` joined (byte-level spellings such as ``Ċ`` for a newline are understood).
    True when, after the last ``<｜Assistant｜>``, it ends with ``<think>`` followed only by
    whitespace: the model's output then begins mid-thought, without an opening tag.
    """
    if not rendered_prompt:
        return False
    pos = rendered_prompt.rfind(ASSISTANT_MARKER)
    if pos < 0:
        return False
    tail = rendered_prompt[pos + len(ASSISTANT_MARKER) :].translate(_BPE_WHITESPACE)
    return _OPEN_THINK_AT_END.search(tail) is not None


def request_extras(prefill_think: bool) -> dict:
    """Extra chat request fields: continue the prefilled assistant message instead of opening one."""
    if prefill_think:
        return {"continue_final_message": True, "add_generation_prompt": False}
    return {}


def temperature_warning(t: float) -> str | None:
    """A one-line warning when ``t`` is outside DeepSeek's recommended 0.5-0.7, else None."""
    lo, hi = TEMPERATURE_RANGE
    eps = 1e-9
    try:
        t = float(t)
    except (TypeError, ValueError):
        return f"temperature {t!r} is not a number; DeepSeek recommends {DEFAULT_TEMPERATURE}"
    if not _math.isnan(t) and lo - eps <= t <= hi + eps:
        return None
    if not _math.isnan(t) and t < lo:
        effect = "R1 models tend to repeat themselves in endless loops"
    else:
        effect = "R1 models tend to ramble and lose coherence"
    return (
        f"temperature {t:g} is outside DeepSeek's recommended {lo}-{hi} "
        f"({DEFAULT_TEMPERATURE} is best): {effect}"
    )


def _field(message, name: str):
    """A message field from a dict or an openai SDK object (pydantic model or plain attributes)."""
    if isinstance(message, dict):
        return message.get(name)
    return getattr(message, name, None)


def _text(content) -> str:
    """OpenAI content: a string, or a list of parts of which the text parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(_field(p, "text") or "") for p in content if _field(p, "type") in (None, "text"))
    return str(content)


def plain_messages(messages) -> tuple[list[dict], str | None]:
    """OpenAI-format messages (dicts or openai SDK objects) as plain user/assistant dicts plus the system
    text (system and developer messages joined), which R1 wants folded into the first question."""
    out: list[dict] = []
    system: list[str] = []
    for message in messages or []:
        role = _field(message, "role")
        text = _text(_field(message, "content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            out.append({"role": role, "content": text})
        else:
            raise ValueError(f"unsupported role in messages: {role!r} (expected system, user or assistant)")
    return out, ("\n\n".join(s for s in system if s.strip()) or None)


def apply(messages, *, math: bool = True, temperature: float | None = None, top_p: float | None = None,
          max_tokens: int | None = None, prefill_think: bool = False) -> tuple[list[dict], dict]:
    """The messages and sampling fields a caller should send for an R1 model, from OpenAI-format messages.

    Works on plain dicts and on openai SDK message objects; pass the result straight to
    ``client.chat.completions.create(messages=..., **sampling)``. Unset sampling fields get DeepSeek's
    values; max_tokens stays unset unless given (a small limit cuts the reasoning before any answer).
    """
    history, system = plain_messages(messages)
    if not history or history[-1]["role"] != "user":
        raise ValueError("the last message must be the user's question")
    sent = build_messages(history[:-1], history[-1]["content"], system=system, math=math, prefill_think=prefill_think)
    sampling: dict = {"temperature": DEFAULT_TEMPERATURE if temperature is None else temperature,
                      "top_p": DEFAULT_TOP_P if top_p is None else top_p}
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    if prefill_think:
        sampling["extra_body"] = request_extras(True)
    return sent, sampling
