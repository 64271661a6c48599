"""The words a person reads, in their language.

Messages live in one catalogue per language, `bot/i18n/locales/<lang>.toml`: a translator edits
text there without touching Python, and adding a language is adding one file (its `[meta]` table
names the Discord locales it serves). `en` is the source language and the fallback. A key is the
table path to its text (`[error]` + `content.ip` = `error.content.ip`); `text()` formats one with
`str.format` placeholders. The `[commands]` table translates slash-command names, options and
descriptions, which are English in the code.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

#: A language code: the name of a catalogue file ("en", "zh").
Lang = str

SOURCE: Lang = "en"


@dataclass(frozen=True)
class Catalogue:
    lang: Lang
    name: str
    discord_locales: tuple[str, ...]
    messages: Mapping[str, str]
    commands: Mapping[str, str]


def _flatten(table: Mapping[str, object], prefix: str = "") -> Iterator[tuple[str, str]]:
    for name, value in table.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        elif isinstance(value, str):
            yield f"{prefix}{name}", value
        else:
            raise ValueError(f"{prefix}{name}: a message must be text, not {type(value).__name__}")


def parse_catalogue(lang: Lang, source: str) -> Catalogue:
    data = tomllib.loads(source)
    meta = data.pop("meta", {})
    commands = data.pop("commands", {})
    return Catalogue(
        lang=lang,
        name=str(meta.get("name", lang)),
        discord_locales=tuple(meta.get("discord_locales", ())),
        messages=dict(_flatten(data)),
        commands=dict(commands),
    )


def load_catalogues(folder: Traversable) -> dict[Lang, Catalogue]:
    """Every `<lang>.toml` in `folder`; the source language must be there."""
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            lang = entry.name.removesuffix(".toml")
            found[lang] = parse_catalogue(lang, entry.read_text(encoding="utf-8"))
    if SOURCE not in found:
        raise RuntimeError(f"the {SOURCE} message catalogue is missing from {folder}")
    return found


@functools.cache
def catalogues() -> dict[Lang, Catalogue]:
    """The catalogues shipped in the package, read once on first use."""
    return load_catalogues(resources.files(__package__).joinpath("locales"))


def lang_for(locale: str | None) -> Lang:
    """The language for a Discord locale (or any BCP-47-ish tag): a catalogue that lists the
    locale, else one whose name starts it (`zh-HK` → `zh`), else English."""
    if not locale:
        return SOURCE
    lowered = locale.lower()
    found = catalogues()
    for lang, catalogue in found.items():
        if any(lowered == listed.lower() for listed in catalogue.discord_locales):
            return lang
    base = lowered.split("-")[0].split("_")[0]
    return base if base in found else SOURCE


def text(key: str, lang: Lang = SOURCE, /, **values: object) -> str:
    """The message `key` in `lang` (English where that catalogue lacks it), formatted."""
    found = catalogues()
    catalogue = found.get(lang, found[SOURCE])
    template = catalogue.messages.get(key)
    if template is None:
        template = found[SOURCE].messages[key]  # an unknown key is a bug: KeyError
    return template.format(**values)


def command_text(string: str, locale: str) -> str | None:
    """A slash command's name, option or description (English in the code) for a Discord
    locale, or None to let Discord show the English."""
    lang = lang_for(locale)
    if lang == SOURCE:
        return None
    return catalogues()[lang].commands.get(string)
