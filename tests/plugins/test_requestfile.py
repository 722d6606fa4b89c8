"""Reading a request file: lines of the usual shape read typed, exactly as the general reader would.

Every case is read twice, once as it is and once with the typed reader
switched off, and both must give the same requests or the same errors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import plugins.requestfile
from plugins.requestfile import JobItem, read_requests
from plugins.usuallines import MAX_SCHEMA_TEXTS, UsualLines
from providers.errors import InputError

SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
SCHEMA_TEXT = json.dumps(SCHEMA)
# The same schema written otherwise: other key order, other spacing.
SCHEMA_REORDERED = (
    '{ "required" : ["word"], "properties": {"word": {"type": "string"}}, "type": "object" }'
)
FIRST = '{"id": "first", "prompt": "learn the schema", "schema": ' + SCHEMA_TEXT + "}"


def _route(task: str | None) -> str:
    return {"define": "routed-model"}.get(task or "", "")


# Lines read after FIRST (so that their schema text, when it is SCHEMA's, is known).
CASES = [
    '{"id": "a", "prompt": "p", "schema": ' + SCHEMA_TEXT + "}",
    '{"id": "a", "prompt": "p", "schema": ' + SCHEMA_REORDERED + "}",
    '{"prompt": "p", "task": "define", "schema": ' + SCHEMA_TEXT + "}",
    '{"prompt": "p", "task": "other", "model": "m2", "schema": ' + SCHEMA_TEXT + "}",
    '{"prompt": "p", "schema": ' + SCHEMA_TEXT + ', "schema_name": "entry"}',
    '{"prompt": "p", "schema": ' + SCHEMA_TEXT + ', "schema_name": ""}',
    '{"prompt": "p", "schema": ' + SCHEMA_TEXT + ', "schema_name": "bad name!"}',
    '{"prompt": "p", "schema": ' + SCHEMA_TEXT + ', "schema_name": 0}',
    '{"prompt": "p", "schema": null}',
    '{"prompt": "p", "schema": "text"}',
    '{"prompt": "p"}',
    '{"id": 7, "prompt": "p"}',
    '{"id": -9223372036854775808, "prompt": "p"}',
    '{"id": 9223372036854775808, "prompt": "p"}',
    '{"id": 18446744073709551616, "prompt": "p"}',
    '{"id": true, "prompt": "p"}',
    '{"id": null, "prompt": "p"}',
    '{"id": 1.0, "prompt": "p"}',
    '{"id": "", "prompt": "p"}',
    '{"prompt": "p", "max_tokens": 0}',
    '{"prompt": "p", "max_tokens": 100}',
    '{"prompt": "p", "max_tokens": 100.0}',
    '{"prompt": "p", "max_tokens": true}',
    '{"prompt": "p", "max_tokens": 123456789012345678901234567890}',
    '{"prompt": "p", "max_tokens": null}',
    '{"prompt": "p", "temperature": 0}',
    '{"prompt": "p", "temperature": 0.7}',
    '{"prompt": "p", "temperature": 1e0}',
    '{"prompt": "p", "temperature": 3}',
    '{"prompt": "p", "temperature": 1e999}',
    '{"prompt": "p", "temperature": 18446744073709551617}',
    '{"prompt": "p", "temperature": false}',
    '{"prompt": "p", "model": null}',
    '{"prompt": "p", "model": ""}',
    '{"prompt": "p", "model": "  "}',
    '{"prompt": "p", "model": 5}',
    '{"prompt": "p", "task": null}',
    '{"prompt": "p", "task": 5}',
    '{"prompt": "p", "system": "be brief"}',
    '{"prompt": "p", "system": null}',
    '{"prompt": "p", "system": 3}',
    '{"prompt": null}',
    '{"prompt": 5}',
    '{"messages": [{"role": "user", "content": "hi"}]}',
    '{"system": "s", "messages": [{"role": "user", "content": "a"}, '
    '{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}',
    '{"messages": [{"role": "user", "content": "hi"}], "prompt": 5}',
    '{"messages": [{"role": "user", "content": "hi"}], "prompt": "ignored"}',
    '{"messages": [{"role": "user", "content": "hi", "name": "bob"}]}',
    '{"messages": [{"role": "user", "content": "hi", "weight": 1e999}]}',
    '{"messages": [{"role": "user", "content": "a", "content": "b"}]}',
    '{"messages": [{"role": "user", "content": "a", "content": 5}]}',
    '{"messages": [{"role": "robot", "content": "hi"}]}',
    '{"messages": [{"role": "user"}]}',
    '{"messages": [{"role": "user", "content": null}]}',
    '{"messages": ["hi"]}',
    '{"messages": []}',
    '{"messages": null}',
    '{"prompt": "a", "prompt": "b"}',
    '{"prompt": "a", "prompt": 5}',
    '{"pr\\u006fmpt": "escaped key"}',
    '{"prompt": "\\ud83d\\ude00 \\u00e9"}',
    '{"prompt": "p", "extras": {"seed": 1}}',
    '{"prompt": "p", "extras": null}',
    '{"prompt": "p", "extras": {"model": "x"}}',
    '{"prompt": "p", "extras": [1]}',
    '{"prompt": "p", "colour": "blue"}',
    '{"task": "t"}',
    "[1, 2]",
    '"text"',
    "not json",
    '{"prompt": "p"} trailing',
    '{"prompt": "\\ud800"}',
    '{"prompt": "p", "schema": {"type": "object", "properties": {"a": {"type": "strin"}}}}',
    '{"prompt": "p", "schema": {"type": "string", "pattern": "[a-"}}',
]


def _read(tmp_path: Path, lines: list[str]) -> list[JobItem] | tuple[Any, ...]:
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        return read_requests(path, default_model="default-model", route=_route)
    except InputError as exc:
        return (exc.message, exc.problems)


def _seen(read: list[JobItem] | tuple[Any, ...]) -> Any:
    """What a read gave, down to each value's type (``0`` and ``0.0`` are equal, not the same)."""
    if isinstance(read, tuple):
        return read
    return [(item.id, item.line, repr(item.request), item.request.key) for item in read]


def _unique_ids(lines: list[str]) -> list[str]:
    """``lines`` with every id an earlier line has made its own (a file's ids are unique)."""
    seen: set[str] = set()
    unique = []
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            given = obj.get("id", n)
            name = given if isinstance(given, str) else str(given)
            if name in seen:
                name = f"again-{n}"
                if "id" in obj:
                    line = re.sub(r'"id": ("[^"]*"|-?\d+)', f'"id": "{name}"', line, count=1)
                else:
                    line = f'{{"id": "{name}", ' + line.lstrip()[1:]
            seen.add(name)
        unique.append(line)
    return unique


def _general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UsualLines, "read", lambda self, raw, lineno: None)
    monkeypatch.setattr(UsualLines, "learn", lambda self, raw, request: None)


@pytest.mark.parametrize("line", CASES)
def test_a_line_reads_the_same_typed_and_general(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    typed = _seen(_read(tmp_path, [FIRST, line]))
    _general_only(monkeypatch)
    general = _seen(_read(tmp_path, [FIRST, line]))
    assert typed == general


def test_every_case_in_one_file_reads_the_same_typed_and_general(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [line for line in CASES if not isinstance(_read(tmp_path, [FIRST, line]), tuple)]
    assert len(good) > 20
    lines = _unique_ids([FIRST, *good, "", *good])
    typed = _seen(_read(tmp_path, lines))
    assert isinstance(typed, list) and len(typed) == 1 + 2 * len(good)
    bad = _read(tmp_path, [FIRST, *CASES])
    _general_only(monkeypatch)
    assert typed == _seen(_read(tmp_path, lines))
    assert bad == _read(tmp_path, [FIRST, *CASES])
    assert isinstance(bad, tuple) and "nothing was sent" in bad[0]


def test_usual_lines_are_read_without_the_general_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    general = plugins.requestfile._parse_line
    parsed: list[int] = []

    def counted(raw: bytes, lineno: int, *args: Any) -> Any:
        parsed.append(lineno)
        return general(raw, lineno, *args)

    monkeypatch.setattr(plugins.requestfile, "_parse_line", counted)
    lines = [
        json.dumps({"id": f"r{i}", "prompt": f"word {i}", "task": "define", "schema": SCHEMA})
        for i in range(500)
    ]
    lines[300] = json.dumps({"id": "r300", "prompt": "word 300", "extras": {"seed": 3}})
    items = _read(tmp_path, lines)
    assert isinstance(items, list) and len(items) == 500
    # The first line of the schema's text, and the one of another shape.
    assert parsed == [1, 301]
    assert [i.id for i in items] == [f"r{i}" for i in range(500)]
    assert {i.request.model for i in items} == {"routed-model", "default-model"}
    assert items[300].request.extras == {"seed": 3}


def test_identical_schemas_are_one_object_and_different_numbers_are_not(tmp_path: Path) -> None:
    def line(schema_text: str) -> str:
        return '{"prompt": "p", "schema": ' + schema_text + "}"

    def enum(values: str) -> str:
        return '{"type": "integer", "enum": [' + values + "]}"

    items = _read(
        tmp_path,
        [
            line(SCHEMA_TEXT),
            line(SCHEMA_REORDERED),
            line(SCHEMA_TEXT),
            line(SCHEMA_REORDERED),
            line(enum("1")),
            line(enum("1.0")),
            line(enum("true")),
            line(enum("1")),
            line(enum("1.0")),
        ],
    )
    assert isinstance(items, list)
    schemas = [i.request.json_schema for i in items]
    assert all(s is schemas[0] for s in schemas[:4])
    assert schemas[4] is schemas[7] and schemas[5] is schemas[8]
    assert len({id(s) for s in schemas[4:7]}) == 3
    assert [s["enum"] for s in schemas[4:7]] == [[1], [1.0], [True]]  # type: ignore[index]
    assert [type(s["enum"][0]) for s in schemas[4:7]] == [int, float, bool]  # type: ignore[index]


def test_past_the_remembered_schema_texts_lines_are_read_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("plugins.usuallines.MAX_SCHEMA_TEXTS", 2)
    texts = [json.dumps({"type": "object", "title": f"T{i}"}) for i in range(4)]
    lines = [
        f'{{"id": "x{i}", "prompt": "p", "schema": ' + t + "}" for i, t in enumerate(texts * 2)
    ]
    typed = _seen(_read(tmp_path, lines))
    assert isinstance(typed, list) and len(typed) == 8
    _general_only(monkeypatch)
    assert typed == _seen(_read(tmp_path, lines))
    assert MAX_SCHEMA_TEXTS > 100


def test_an_id_is_refused_when_empty_or_an_earlier_lines_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Results are matched to their lines by id; a line without one is its line number.
    lines = [
        '{"id": "a", "prompt": "p"}',
        '{"id": "a", "prompt": "q", "schema": ' + SCHEMA_TEXT + "}",
        '{"prompt": "r"}',
        '{"id": 3, "prompt": "s"}',
        '{"id": "", "prompt": "t"}',
        '{"id": "b", "messages": [{"role": "user", "content": "u"}]}',
        '{"id": "b", "messages": [{"role": "user", "content": "u"}]}',
    ]
    typed = _read(tmp_path, lines)
    _general_only(monkeypatch)
    assert typed == _read(tmp_path, lines)
    path = tmp_path / "r.jsonl"
    assert typed == (
        f"{path}: 4 of 7 request lines are invalid; nothing was sent — fix them and run again",
        (
            f"{path}:2: id 'a' is line 1's too: give each request its own id (a line without "
            "one is known by its line number)",
            f"{path}:4: id '3' is line 3's too: give each request its own id (a line without "
            "one is known by its line number)",
            f"{path}:5: id is empty: give the line an id of its own, or none (its line number "
            "is used)",
            f"{path}:7: id 'b' is line 6's too: give each request its own id (a line without "
            "one is known by its line number)",
        ),
    )


def test_a_repeated_field_reads_as_its_last_value_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, last = '{"type": "object", "title": "A"}', '{"type": "object", "title": "B"}'
    lines = [
        '{"id": "x", "id": "y", "prompt": "p", "schema": ' + first + ', "schema": ' + last + "}",
        '{"prompt": "p", "schema": ' + first + "}",
        '{"prompt": "p", "schema": ' + last + "}",
        '{"prompt": "p", "schema": ' + first + ', "schema": ' + last + "}",
    ]
    typed = _read(tmp_path, lines)
    assert isinstance(typed, list)
    assert [i.id for i in typed] == ["y", "2", "3", "4"]
    titles = [i.request.json_schema["title"] for i in typed]  # type: ignore[index]
    assert titles == ["B", "A", "B", "B"]
    _general_only(monkeypatch)
    assert _seen(typed) == _seen(_read(tmp_path, lines))
