"""The message catalogues: complete in every language, equal placeholders, one file a language."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

import bot.i18n as i18n
from bot.i18n import SOURCE, catalogues, command_text, lang_for, load_catalogues, text

LOCALES = Path(i18n.__file__).parent / "locales"


def placeholders(template: str) -> set[str]:
    """The names a template formats, `{size_mb:.1f}` → size_mb."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_catalogue_has_every_message_with_the_same_placeholders() -> None:
    found = catalogues()
    assert {"en", "zh"} <= set(found)
    source = found[SOURCE].messages
    assert len(source) > 100
    for lang, catalogue in found.items():
        assert set(catalogue.messages) == set(source), lang
        for key, template in catalogue.messages.items():
            assert template.strip(), (lang, key)
            assert placeholders(template) == placeholders(source[key]), (lang, key)


def test_non_source_catalogues_translate_the_same_command_strings() -> None:
    found = catalogues()
    translated = [c for lang, c in found.items() if lang != SOURCE]
    assert translated
    for catalogue in translated:
        assert set(catalogue.commands) == set(translated[0].commands), catalogue.lang
        assert catalogue.discord_locales, catalogue.lang


@pytest.mark.parametrize(
    ("locale", "lang"),
    [
        ("zh-CN", "zh"),
        ("zh-TW", "zh"),
        ("zh-HK", "zh"),
        ("ZH-cn", "zh"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
        ("x" * 500, "en"),
    ],
)
def test_lang_for(locale: str | None, lang: str) -> None:
    assert lang_for(locale) == lang


def test_text_formats_in_the_language_asked() -> None:
    assert text("image.fetch", "en", index=2, detail="bad size") == (
        "Image 2 could not be fetched: bad size"
    )
    assert text("image.fetch", "zh", index=2, detail="bad size") == "无法获取第 2 张图片：bad size"
    # A language without a catalogue falls back on the source; an unknown key is a bug.
    assert text("image.fetch", "xx", index=1, detail="d") == text(
        "image.fetch", "en", index=1, detail="d"
    )
    with pytest.raises(KeyError):
        text("no.such.key")


def test_command_strings_for_discord_locales() -> None:
    assert command_text("imagine", "zh-CN") == "画图"
    assert command_text("imagine", "zh-TW") == "画图"
    assert command_text("imagine", "en-US") is None
    assert command_text("a string nobody translated", "zh-CN") is None


def test_a_third_language_is_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for entry in LOCALES.glob("*.toml"):
        (tmp_path / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    source = (LOCALES / "en.toml").read_text(encoding="utf-8")
    french = source.replace('name = "English"', 'name = "Français"').replace(
        "discord_locales = []", 'discord_locales = ["fr"]\n[commands]\nimagine = "imaginer"'
    )
    french = french.replace(
        "Image {index} could not be fetched: {detail}",
        "Image {index} : échec de la récupération ({detail})",
    )
    (tmp_path / "fr.toml").write_text(french, encoding="utf-8")
    loaded = load_catalogues(tmp_path)
    monkeypatch.setattr(i18n, "catalogues", lambda: loaded)
    assert lang_for("fr") == "fr"
    assert text("image.fetch", lang_for("fr"), index=3, detail="x") == (
        "Image 3 : échec de la récupération (x)"
    )
    assert command_text("imagine", "fr") == "imaginer"
    assert set(loaded["fr"].messages) == set(loaded[SOURCE].messages)


def test_a_catalogue_without_the_source_language_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zh.toml").write_text((LOCALES / "zh.toml").read_text(encoding="utf-8"))
    with pytest.raises(RuntimeError, match="the en message catalogue is missing"):
        load_catalogues(tmp_path)


def test_a_message_must_be_text() -> None:
    with pytest.raises(ValueError, match=r"reply\.n: a message must be text"):
        i18n.parse_catalogue("xx", "[reply]\nn = 3\n")


def test_catalogues_ship_with_the_package() -> None:
    """The wheel carries the .toml files (package data), not just the Python."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]
    assert "locales/*.toml" in data["bot.i18n"]
