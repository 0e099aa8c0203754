"""What each implementation publishes behind each NAT kind: collected by the interop tests,
written as JSON and printed as a table (``pytest -s`` shows it; docs/nat.md quotes it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Findings", "Published"]


@dataclass(frozen=True, slots=True)
class Published:
    """One endpoint record as read from the DHT by a peer on the public side."""

    nat_type: int
    endpoints: tuple[str, ...]
    seq: int
    age_s: float
    """Seconds between the publisher's start and the read."""
    read_by: str


@dataclass
class Findings:
    """``kind -> implementation -> what it published`` plus notes (mailbox paths...)."""

    expected: dict[str, int]
    """The nat_type ours must publish per kind."""
    wan: dict[str, str] = field(default_factory=dict)
    published: dict[str, dict[str, Published | str]] = field(default_factory=dict)
    """``kind -> impl ->`` the record, or why there is none."""
    notes: dict[str, dict[str, str]] = field(default_factory=dict)

    def record(self, kind: str, impl: str, got: Published | str) -> None:
        self.published.setdefault(kind, {})[impl] = got

    def note(self, kind: str, what: str, value: str) -> None:
        self.notes.setdefault(kind, {})[what] = value

    def as_json(self) -> dict[str, Any]:
        return {
            "expected_ours": self.expected,
            "wan": self.wan,
            "published": {
                kind: {impl: p if isinstance(p, str) else asdict(p) for impl, p in row.items()}
                for kind, row in self.published.items()
            },
            "notes": self.notes,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2, sort_keys=True) + "\n")

    def table(self) -> str:
        """A Markdown table, one line per NAT kind and record read, then the notes."""
        lines = [
            "| NAT kind | WAN address | publisher | nat_type | endpoints | record (seq, age) "
            "| ours must publish |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, want in self.expected.items():
            for impl, got in self.published.get(kind, {}).items():
                if isinstance(got, str):
                    cells = f"none | {got} | "
                else:
                    urls = ", ".join(f"`{u}`" for u in got.endpoints) or "(none)"
                    cells = f"{got.nat_type} | {urls} | seq {got.seq} at {got.age_s:.0f} s"
                wan = self.wan.get(kind, "?")
                lines.append(f"| {kind} | {wan} | {impl} | {cells} | {want} |")
        for kind, notes in self.notes.items():
            for what, value in notes.items():
                lines.append(f"- {kind}: {what}: {value}")
        return "\n".join(lines)
