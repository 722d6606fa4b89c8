"""Word list reading: cleaning, de-duplication, reporting, unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.errors import InputError
from synthesis.wordlist import clean_word, parse_word_list, read_word_list

SAMPLE = Path(__file__).parents[2] / "synthesis" / "data" / "sample_words.txt"


def test_empty_lines_comments_and_duplicates_are_skipped_and_counted() -> None:
    words, report = parse_word_list(["apple", "", "   ", "# a comment", "Apple", "run", "APPLE "])
    assert words == ["apple", "run"]
    assert report.empty == 2
    assert report.comments == 1
    assert report.duplicate_count == 2
    assert report.duplicates == ["Apple", "APPLE"]
    assert report.words == 2
    assert report.lines == 7


def test_odd_unicode_is_normalized_and_reported() -> None:
    decomposed = "cafe\u0301"  # e + combining acute
    words, report = parse_word_list(
        [decomposed, "na\u200bive", "\ufeffbom", "tab\there", "x\x07y", "café"]
    )
    assert words == ["café", "naive", "bom", "tab here", "xy"]
    assert [c[0] for c in report.cleaned] == [1, 2, 3, 4, 5]
    assert report.duplicate_count == 1  # the precomposed "café" repeats line 1
    assert not report.clean


def test_line_of_only_invisible_characters_is_unusable_not_fatal() -> None:
    words, report = parse_word_list(["\u200b\u200d", "ok"])
    assert words == ["ok"]
    assert report.unusable == [(1, "\u200b\u200d")]
    assert "1 unusable line skipped" in report.summary()


def test_clean_word_keeps_letters_of_any_script() -> None:
    assert clean_word("  Straße ") == "Straße"
    assert clean_word("日本語") == "日本語"
    assert clean_word("  two   words ") == "two words"


def test_summary_names_what_was_dropped() -> None:
    _, report = parse_word_list(["a", "A", "b"], source="w.txt")
    text = report.summary()
    assert text.startswith("2 words from w.txt")
    assert "1 duplicate dropped (A)" in text


def test_read_word_list_file_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes("\ufeffapple\r\nrun\r\n".encode())
    words, report = read_word_list(path)
    assert words == ["apple", "run"]
    assert report.clean


def test_missing_file_is_one_line_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        read_word_list(tmp_path / "nope.txt")
    assert "nope.txt" in str(err.value)
    assert "\n" not in str(err.value)


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"apple\x00\x01\x02")
    with pytest.raises(InputError, match="not a text file"):
        read_word_list(path)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_word_list(path)


def test_sample_word_list_shows_each_kind_of_handling() -> None:
    words, report = read_word_list(SAMPLE)
    assert "apple" in words and "run" in words and "smartphone" in words
    assert "café" in words
    assert len(words) == len({w.casefold() for w in words})
    assert report.duplicate_count == 1
    assert report.empty >= 1
    assert report.cleaned, "the sample has a word with odd Unicode"
    assert 10 <= len(words) <= 20


def test_lines_the_lookup_service_would_refuse_are_skipped_as_unusable() -> None:
    from synthesis.wordlist import MAX_WORD_CHARS, word_problem

    long_line = "a" * (MAX_WORD_CHARS + 1)
    words, report = parse_word_list(["apple", "12345", long_line, "x" * 10_000_000, "A-1"])
    assert words == ["apple", "A-1"]
    assert [n for n, _ in report.unusable] == [2, 3, 4]
    assert "3 unusable lines skipped (line 2, line 3, line 4)" in report.summary()
    # One rule for a word list and for `lexibatch serve`.
    assert word_problem("12345") == "'12345' has no letter: not a word"
    assert word_problem(long_line) == f"the word is 65 characters long; at most {MAX_WORD_CHARS}"
    assert word_problem("a" * MAX_WORD_CHARS) is None
