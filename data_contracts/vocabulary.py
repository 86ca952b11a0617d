"""The findings vocabulary: one data file shared by every stage (DESIGN §6).

It is data so that a site can add findings or synonyms with a YAML file and no code change.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster

NO_FINDING = "no_finding"
SUPPORT_DEVICES = "support_devices"
OTHER_ABNORMALITY = "other_abnormality"  # the catch-all: any abnormality outside the named findings


OPTIONS_DIR = "vocabulary_options"  # shipped opt-in entries, named by file stem


@dataclass(frozen=True)
class Finding:
    """One finding: its phrases, and its written inclusion and exclusion criteria (as data)."""

    name: str
    description: str = ""
    synonyms: tuple[str, ...] = ()
    derived: bool = False
    suggestive: tuple[str, ...] = ()  # phrases that suggest the finding: at most uncertain (-1)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


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
        lists = {key: _strings(entry, key, name, source) for key in ("synonyms", "suggestive", "include", "exclude")}
        findings.append(
            Finding(
                name=name,
                description=str(entry.get("description", "")),
                derived=bool(entry.get("derived", False)),
                **lists,
            )
        )
    return str(doc.get("name", source)), str(doc.get("version", "0")), findings


def _strings(entry: dict, key: str, name: str, source: str) -> tuple[str, ...]:
    values = entry.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise UsageError(f"vocabulary {source}: '{key}' of '{name}' must be a list of non-empty strings")
    return tuple(" ".join(v.split()) for v in values)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"vocabulary file not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"vocabulary file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


@functools.lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """The shipped vocabulary, parsed once per process (a frozen value: sharing it is safe)."""
    text = resources.files(__package__).joinpath("vocabulary.yaml").read_text(encoding="utf-8")
    name, version, findings = _parse(yaml.load(text, Loader=_YAML_LOADER), "vocabulary.yaml")
    return Vocabulary(name, version, tuple(findings))


def vocabulary_options() -> list[str]:
    """Names of the shipped opt-in entries (`--vocabulary hyperinflation-as-emphysema`)."""
    folder = resources.files(__package__).joinpath(OPTIONS_DIR)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _resolve(spec: str | Path) -> tuple[Any, str]:
    """A site file's parsed YAML, or a shipped option's when `spec` names one and no such file exists."""
    path = Path(spec)
    if not path.exists() and str(spec) in vocabulary_options():
        text = resources.files(__package__).joinpath(OPTIONS_DIR, f"{spec}.yaml").read_text(encoding="utf-8")
        return yaml.safe_load(text), str(spec)
    if not path.exists() and "/" not in str(spec) and not str(spec).endswith((".yaml", ".yml")):
        raise UsageError(f"vocabulary '{spec}' is neither a file nor a shipped option "
                         f"(options: {', '.join(vocabulary_options())})")
    return _read_yaml(path), str(path)


def _specs(path: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    if path is None:
        return []
    if isinstance(path, Path):
        return [path]
    if isinstance(path, str):
        return [p.strip() for p in path.split(",") if p.strip()]
    return [q for p in path for q in _specs(p)]


def _phrase_key(phrase: str) -> str:
    return " ".join(phrase.lower().split())


def _merge(base: dict[str, Finding], extra: list[Finding]) -> dict[str, Finding]:
    """Add a site's findings and synonyms; a site's phrase moves to its finding from any default owner."""
    moved = {_phrase_key(p) for f in extra for p in (*f.synonyms, *f.suggestive)}
    merged = {
        name: dataclasses.replace(f, synonyms=tuple(p for p in f.synonyms if _phrase_key(p) not in moved),
                      suggestive=tuple(p for p in f.suggestive if _phrase_key(p) not in moved))
        for name, f in base.items()
    }
    for f in extra:
        old = merged.get(f.name)
        if old is None:
            merged[f.name] = f
            continue
        merged[f.name] = dataclasses.replace(
            old,
            description=old.description or f.description,
            synonyms=tuple(dict.fromkeys(f.synonyms + old.synonyms)),  # the site's first: they own their phrases
            suggestive=tuple(dict.fromkeys(f.suggestive + old.suggestive)),
            include=old.include + f.include,
            exclude=old.exclude + f.exclude,
        )
    return merged


def load_vocabulary(path: str | Path | Sequence[str | Path] | None = None, *, replace: bool = False) -> Vocabulary:
    """The default vocabulary, extended (or replaced, with `replace=True`) by site files or shipped options.

    `path` is a file, a shipped option's name, or several of them (a list, or comma-separated).
    Extending: a new name appends a finding; an existing name gains the file's synonyms, and a
    phrase a site names moves to that finding from wherever the default had it.
    """
    specs = _specs(path)
    base = default_vocabulary()
    if not specs:
        return base
    parsed = [_parse(*_resolve(spec)) for spec in specs]
    names = "+".join(n for n, _, _ in parsed)
    versions = "+".join(v for _, v, _ in parsed)
    if replace:
        extra = [f for _, _, fs in parsed for f in fs]
        merged = _merge({}, extra)
        if NO_FINDING not in merged:
            merged = {NO_FINDING: Finding(NO_FINDING, "No finding.", derived=True), **merged}
        return Vocabulary(names, versions, tuple(merged.values()))
    merged = {f.name: f for f in base.findings}
    for _, _, extra in parsed:
        merged = _merge(merged, extra)
    return Vocabulary(f"{base.name}+{names}", f"{base.version}+{versions}", tuple(merged.values()))


def vocabulary_from_metadata(metadata: dict[bytes, bytes] | None) -> list[str] | None:
    """The finding names a table was written with, or None if it records none."""
    if not metadata or b"radsim.vocabulary.findings" not in metadata:
        return None
    return json.loads(metadata[b"radsim.vocabulary.findings"])


def criteria_table(vocabulary: Vocabulary | None = None) -> str:
    """The per-finding inclusion and exclusion criteria as a markdown table (the README shows it)."""
    vocabulary = vocabulary or default_vocabulary()
    rows = ["| finding | counts as the finding | is not the finding |", "|---|---|---|"]
    for f in vocabulary.findings:
        rows.append(f"| `{f.name}` | {'; '.join(f.include)} | {'; '.join(f.exclude)} |")
    return "\n".join(rows)
