"""The findings vocabulary: one data file shared by every stage (DESIGN §6).

It is data so that a site can add findings or synonyms with a YAML file and no code change.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

NO_FINDING = "no_finding"
SUPPORT_DEVICES = "support_devices"


@dataclass(frozen=True)
class Finding:
    name: str
    description: str = ""
    synonyms: tuple[str, ...] = ()
    derived: bool = False


@dataclass(frozen=True)
class Vocabulary:
    name: str
    version: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def names(self) -> tuple[str, ...]:
        """Finding names in column order; `no_finding` first."""
        return tuple(f.name for f in self.findings)

    @property
    def observed(self) -> tuple[str, ...]:
        """Findings that phrases can assert (everything but the derived `no_finding`)."""
        return tuple(f.name for f in self.findings if not f.derived)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.findings)

    def fingerprint(self) -> str:
        """Short hash of the names in order: two tables are comparable only if this matches."""
        return hashlib.sha256(json.dumps(self.names).encode()).hexdigest()[:12]

    def metadata(self) -> dict[str, str]:
        """What every label-bearing table records about its vocabulary."""
        return {
            "radsim.vocabulary.name": self.name,
            "radsim.vocabulary.version": self.version,
            "radsim.vocabulary.findings": json.dumps(list(self.names)),
        }


def _parse(doc: Any, source: str) -> tuple[str, str, list[Finding]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        raise UsageError(f"vocabulary {source}: expected a mapping with a 'findings' list")
    findings: list[Finding] = []
    for i, entry in enumerate(doc["findings"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise UsageError(f"vocabulary {source}: finding #{i + 1} needs a 'name'")
        name = entry["name"].strip()
        if not name.replace("_", "").isalnum() or name != name.lower():
            raise UsageError(f"vocabulary {source}: finding name '{name}' must be snake_case")
        synonyms = entry.get("synonyms") or []
        if not isinstance(synonyms, list) or not all(isinstance(s, str) and s.strip() for s in synonyms):
            raise UsageError(f"vocabulary {source}: 'synonyms' of '{name}' must be a list of non-empty strings")
        findings.append(
            Finding(
                name=name,
                description=str(entry.get("description", "")),
                synonyms=tuple(s.strip() for s in synonyms),
                derived=bool(entry.get("derived", False)),
            )
        )
    return str(doc.get("name", source)), str(doc.get("version", "0")), findings


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"vocabulary file not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"vocabulary file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


def default_vocabulary() -> Vocabulary:
    text = resources.files(__package__).joinpath("vocabulary.yaml").read_text(encoding="utf-8")
    name, version, findings = _parse(yaml.safe_load(text), "vocabulary.yaml")
    return Vocabulary(name, version, tuple(findings))


def load_vocabulary(path: str | Path | None = None, *, replace: bool = False) -> Vocabulary:
    """The default vocabulary, extended (or replaced, with `replace=True`) by a site's YAML file.

    Extending: a new name appends a finding; an existing name gains the file's synonyms.
    """
    base = default_vocabulary()
    if path is None:
        return base
    name, version, extra = _parse(_read_yaml(Path(path)), str(path))
    if replace:
        if NO_FINDING not in {f.name for f in extra}:
            extra.insert(0, Finding(NO_FINDING, "No finding.", derived=True))
        return Vocabulary(name, version, tuple(extra))
    merged = {f.name: f for f in base.findings}
    for f in extra:
        if f.name in merged:
            old = merged[f.name]
            syn = old.synonyms + tuple(s for s in f.synonyms if s not in old.synonyms)
            merged[f.name] = Finding(old.name, old.description or f.description, syn, old.derived)
        else:
            merged[f.name] = f
    return Vocabulary(f"{base.name}+{name}", f"{base.version}+{version}", tuple(merged.values()))


def vocabulary_from_metadata(metadata: dict[bytes, bytes] | None) -> list[str] | None:
    """The finding names a table was written with, or None if it records none."""
    if not metadata or b"radsim.vocabulary.findings" not in metadata:
        return None
    return json.loads(metadata[b"radsim.vocabulary.findings"])
