"""The conversation of `r1 chat` and its file format (/save, /load): turns kept as typed and answered,
history sent as final answers only. Pure, but for save/load."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

@dataclass
class Turn:
    user: str
    assistant: str = ""  # the answer channel only; the reasoning is kept apart
    reasoning: str = ""
    finish_reason: str | None = None
    interrupted: bool = False


FORMAT = "r1-chat"
VERSION = 1


class ConversationFileError(ValueError):
    pass


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    system: str | None = None
    math: bool = True
    model: str | None = None

    def history(self) -> list[dict]:
        """Earlier turns as chat messages: user texts and the assistant's final answers only. A turn
        interrupted before any answer text is left out (its question would dangle unanswered)."""
        out: list[dict] = []
        for turn in self.turns:
            if turn.interrupted and not turn.assistant.strip():
                continue
            out.append({"role": "user", "content": turn.user})
            out.append({"role": "assistant", "content": turn.assistant})
        return out

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model": self.model, "system": self.system,
                "math": self.math, "turns": [asdict(t) for t in self.turns]}

    @classmethod
    def from_json(cls, data: object) -> "Conversation":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConversationFileError(f"not an r1 chat file (no \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise ConversationFileError(f"unsupported version {data.get('version')!r} (this r1 reads {VERSION})")
        turns = []
        for i, raw in enumerate(data.get("turns") or []):
            if not isinstance(raw, dict) or not isinstance(raw.get("user"), str):
                raise ConversationFileError(f"turn {i + 1} has no \"user\" text")
            try:
                turns.append(Turn(**raw))
            except TypeError as exc:
                raise ConversationFileError(f"turn {i + 1}: {exc}") from None
        system = data.get("system")
        return cls(turns=turns, system=system if isinstance(system, str) else None,
                   math=bool(data.get("math", True)), model=data.get("model"))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n"

    def save(self, path: str | Path, force: bool = False) -> Path:
        path = Path(path).expanduser()
        if path.exists() and not force:
            raise FileExistsError(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Conversation":
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConversationFileError(f"not JSON: {exc}") from None
        return cls.from_json(data)
