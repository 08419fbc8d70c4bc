"""The layout against hostile names: dates at the calendar's edges, digits of other scripts, folders the
tidy must not touch, names that would break a log line. Each one is kept and reported, never a crash,
never uploaded, never removed."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.upload.layout import (
    MalformedPath,
    is_eligible,
    parse_data_path,
    remove_empty_folders,
    scan_base_dir,
    shown,
)

NOW = datetime(2026, 3, 1, 12, 30, 40, tzinfo=UTC)
GOOD = "loc/2020/1/1/0/05-t.dat"


def make(base: Path, rel: str) -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"keep\n")
    os.utime(path, (NOW.timestamp() - 600,) * 2)
    return path


def folders(base: Path) -> set[str]:
    return {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_dir()}


# Dates at the edges of the calendar ---------------------------------------------------------------------


def test_the_last_minute_of_year_9999_is_malformed_not_a_crash(tmp_path):
    last = make(tmp_path, "loc/9999/12/31/23/59-x.dat")  # its minute would end in year 10000
    make(tmp_path, GOOD)
    scan = scan_base_dir(tmp_path, NOW, 30, 100)
    assert [c.rel for c in scan.eligible] == [GOOD]
    assert scan.malformed == [(str(last), "9999-12-31 23:59 is out of range (its minute ends after year 9999)")]
    assert last.read_bytes() == b"keep\n"


@pytest.mark.parametrize("rel", ["loc/9999/12/31/23/58-x.dat", "loc/9999/12/31/23/0-x.dat"])
def test_the_minutes_before_it_are_in_the_layout_and_never_ready(rel):
    data = parse_data_path(rel)
    assert not is_eligible(data, NOW.timestamp() - 600, NOW, 30)


def test_the_first_minute_of_year_1_is_in_the_layout_and_ready():
    data = parse_data_path("loc/0001/01/01/00/00-x.dat")
    assert data.minute == datetime(1, 1, 1, tzinfo=UTC)
    assert is_eligible(data, NOW.timestamp() - 600, NOW, 30)


def test_year_0_is_malformed():
    with pytest.raises(MalformedPath, match="0000-01-01 00:00 is not a real date and time"):
        parse_data_path("loc/0000/01/01/00/00-x.dat")


def test_tidy_keeps_the_folders_of_periods_ending_after_year_9999_and_removes_year_1(tmp_path):
    for rel in ("loc/9999/12/31/23", "loc/9999/12/30/23", "loc/0001/01/01/00", "loc/0000/01/01/00"):
        (tmp_path / rel).mkdir(parents=True)
    removed = remove_empty_folders(tmp_path, NOW, 30)
    assert set(removed) == {str(tmp_path / r) for r in ("loc/0001/01/01/00", "loc/0001/01/01", "loc/0001/01",
                                                        "loc/0001")}
    assert {"loc/9999/12/31/23", "loc/9999/12/30/23", "loc/0000/01/01/00"} <= folders(tmp_path)


# Digits are ASCII 0-9, in every position -----------------------------------------------------------------

#: the same date "2020/1/1/0/05" in other scripts' digits: each is a Unicode decimal digit that \d matches
SCRIPTS = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩", "extended-arabic": "۰۱۲۳۴۵۶۷۸۹", "devanagari": "०१२३४५६७८९",
    "bengali": "০১২৩৪৫৬৭৮৯", "thai": "๐๑๒๓๔๕๖๗๘๙", "full-width": "０１２３４５６７８９",
    "math-bold": "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗", "math-monospace": "𝟶𝟷𝟸𝟹𝟺𝟻𝟼𝟽𝟾𝟿",
}
POSITIONS = {"year": 1, "month": 2, "day": 3, "hour": 4, "minute": 5}


def in_script(ascii_digits: str, digits: str) -> str:
    return "".join(digits[int(c)] if c.isdigit() else c for c in ascii_digits)


def first_digit_in_script(part: str, digits: str) -> str:
    """``part`` with only its first digit in another script: "2020" → "٢020"."""
    i = next(i for i, c in enumerate(part) if c in "0123456789")
    return part[:i] + digits[int(part[i])] + part[i + 1 :]


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("convert", [in_script, first_digit_in_script], ids=["all", "one"])
def test_a_date_with_another_scripts_digit_is_malformed(script, position, convert):
    parts = GOOD.split("/")
    parts[POSITIONS[position]] = convert(parts[POSITIONS[position]], SCRIPTS[script])
    with pytest.raises(MalformedPath):
        parse_data_path("/".join(parts))


def test_files_dated_in_other_scripts_are_kept_and_reported(tmp_path):
    bad = [make(tmp_path, f"loc/{in_script('2020/1/1/0/05', digits)}-{name}.dat") for name, digits in SCRIPTS.items()]
    make(tmp_path, GOOD)
    scan = scan_base_dir(tmp_path, NOW, 30, 100)
    assert [c.rel for c in scan.eligible] == [GOOD]
    assert sorted(p for p, _ in scan.malformed) == sorted(map(str, bad))
    assert all(p.read_bytes() == b"keep\n" for p in bad)


def test_tidy_leaves_date_folders_in_other_scripts_alone(tmp_path):
    for digits in SCRIPTS.values():
        (tmp_path / "loc" / in_script("2020/1/1/0", digits)).mkdir(parents=True)
    before = folders(tmp_path)
    assert remove_empty_folders(tmp_path, NOW, 30) == []
    assert folders(tmp_path) == before


# Tidy stays inside the layout the scan accepts -----------------------------------------------------------


def test_tidy_removes_only_inside_the_layout(tmp_path):
    outside = [".snapshot/2020/01/01/00", "bad\x01loc/2020/01/01/00", "..x/2020/01/01/00", "a\x1fb/2020/1/1/0"]
    for rel in [*outside, "loc/2020/01/01/00", "site 7/2020/1/2/3"]:
        (tmp_path / rel).mkdir(parents=True)
    os.makedirs(os.path.join(os.fsencode(tmp_path), b"caf\xe9", b"2020", b"01", b"01", b"00"))  # not UTF-8
    make(tmp_path, ".snapshot/2020/01/01/01/05-t.dat")
    scan = scan_base_dir(tmp_path, NOW, 30, 100)
    assert scan.eligible == [] and scan.malformed_total == 1  # the scan calls that location malformed

    removed = remove_empty_folders(tmp_path, NOW, 30)

    assert set(removed) == {str(tmp_path / r) for r in (
        "loc/2020/01/01/00", "loc/2020/01/01", "loc/2020/01", "loc/2020",
        "site 7/2020/1/2/3", "site 7/2020/1/2", "site 7/2020/1", "site 7/2020",
    )}
    left = folders(tmp_path)
    assert {"loc", "site 7", *outside} <= left
    assert os.path.isdir(os.path.join(os.fsencode(tmp_path), b"caf\xe9", b"2020", b"01", b"01", b"00"))


def test_tidy_still_waits_for_the_period_to_settle_inside_the_layout(tmp_path):
    (tmp_path / "loc/2026/03/01/12").mkdir(parents=True)  # the current hour
    (tmp_path / "loc/2026/03/01/11").mkdir(parents=True)  # ended 30 min ago
    assert remove_empty_folders(tmp_path, NOW, 30) == [str(tmp_path / "loc/2026/03/01/11")]
    assert (tmp_path / "loc/2026/03/01/12").is_dir()


def test_tidy_never_follows_a_linked_location_or_date_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "2020/01/01/00").mkdir(parents=True)
    (tmp_path / "base/loc").mkdir(parents=True)
    (tmp_path / "base/linked").symlink_to(elsewhere)
    (tmp_path / "base/loc/2020").symlink_to(elsewhere / "2020")
    assert remove_empty_folders(tmp_path / "base", NOW, 30) == []
    assert (elsewhere / "2020/01/01/00").is_dir()


# shown(): one printable line that says exactly what the name holds ----------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("a\nb", "a\\nb"), ("a\rb", "a\\rb"), ("a\tb", "a\\tb"),
    ("a\u2028b", "a\\u2028b"), ("a\u2029b", "a\\u2029b"), ("a\x85b", "a\\u0085b"),  # line breaks to Python
    ("a\x00b", "a\\u0000b"), ("a\x01b", "a\\u0001b"), ("a\x1bb", "a\\u001bb"), ("a\x7fb", "a\\u007fb"),
    ("a\u202eb", "a\\u202eb"), ("a\u200bb", "a\\u200bb"), ("a\xa0b", "a\\u00a0b"),  # bidi, zero-width, nbsp
    ("a\U000e0001b", "a\\U000e0001b"),  # a language tag (a format character outside the BMP)
    ("caf\udce9.dat", "caf\\xe9.dat"),  # a byte that is not UTF-8 (os.fsdecode's surrogate)
    ("a\\nb", "a\\\\nb"), ("a\\xe9", "a\\\\xe9"),  # a real backslash: never mistaken for an escape
    ("\u3164", "\\u3164"), ("a\u3164b", "a\\u3164b"), ("a\uffa0\u115f\u1160b", "a\\uffa0\\u115f\\u1160b"),  # Hangul fillers
    ("a\u2800b", "a\\u2800b"), ("caf\ufffd.dat", "caf\\ufffd.dat"),  # a blank Braille cell; U+FFFD is not a byte
    ("a\U0001d159b", "a\\U0001d159b"),  # the musical null notehead: a symbol drawn as nothing
])
def test_shown_escapes_what_is_not_printable(name, expected):
    assert shown(name) == expected
    assert shown(name).isprintable() and len(shown(name).splitlines()) == 1


@pytest.mark.parametrize(("name", "expected"), [
    ("\u1112\u1161\u11ab\u1100\u1173\u11af", "\u1112\\u1161\u11ab\u1100\\u1173\u11af"),  # NFD 한글 (macOS)
    ("\ud558\u11ab", "\ud558\\u11ab"),  # 하 and a trailing ᆫ: NFC makes them 한
    ("\u0b95\u0bc6\u0bbe", "\u0b95\u0bc6\\u0bbe"),  # Tamil கொ with its vowel sign in two parts (NFD)
    ("\u0995\u09c7\u09be", "\u0995\u09c7\\u09be"),  # Bengali কো likewise
])
def test_shown_tells_a_decomposed_name_from_its_nfc_form_in_every_script(name, expected):
    """NFD é shows as e\\u0301 (a combining mark); NFD Hangul and the Indic two-part vowels decompose into
    letters and spacing marks, not combining ones, and looked exactly like their NFC form: the character NFC
    would join to the one before it is escaped. The NFC forms stay as they are."""
    import unicodedata

    assert shown(name) == expected
    assert shown(unicodedata.normalize("NFC", name)) == unicodedata.normalize("NFC", name)


def test_shown_escapes_every_character_unicode_calls_ignorable_or_white_space():
    """The blank characters Python calls printable (the Hangul fillers are letters) are found by Unicode's
    own properties, not by a list written from memory: each one but the ASCII space is escaped."""
    import regex  # requirements-dev.txt pins it
    blank = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{White_Space}]")
    missed = [f"U+{cp:04X}" for cp in range(0x110000)
              if not 0xD800 <= cp <= 0xDFFF and cp != 0x20 and blank.match(chr(cp)) and shown(f"a{chr(cp)}b") == f"a{chr(cp)}b"]
    assert missed == []


@pytest.mark.parametrize("name", ["/data/café/05-日本.dat", "/d/Ünïcödé 𝟎/ok", "/plain/2020/1/1/0/05-t.dat",
                                  "/d/שלום/05-مرحبا.dat", "/d/한글/ok", "/d/கொ/কো/ᄀ"])
def test_shown_keeps_printable_names_of_any_script_as_they_are(name):
    assert shown(name) == name


def test_shown_tells_a_byte_a_character_and_backslash_text_apart():
    assert len({shown("\udc85"), shown("\x85"), shown("\\x85"), shown("\\u0085")}) == 4


@pytest.mark.parametrize("odd", ["\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x7f", "\u202e"])
def test_a_malformed_name_is_reported_on_one_printable_line(tmp_path, odd):
    make(tmp_path, GOOD)
    paths = [make(tmp_path, f"loc/2020/1/1/0/notes{odd}x.txt"),  # malformed by its name
             make(tmp_path, f"loc/2020/1/1{odd}/0/05-t.dat"),  # by its date folder
             make(tmp_path, f"lo{odd}c/05-t.dat")]  # by its depth
    scan = scan_base_dir(tmp_path, NOW, 30, 100)
    assert [c.rel for c in scan.eligible] == [GOOD] and scan.malformed_total == len(paths)
    for path, reason in scan.malformed:
        line = f"malformed, left alone: {path} ({reason})"  # the uploader's log line
        assert line.isprintable() and len(line.splitlines()) == 1, line
    assert sorted(p for p, _ in scan.malformed) == sorted(shown(str(p)) for p in paths)
