"""Reading training files: encodings, columns, formats, skipping, splits."""

from __future__ import annotations

import json

import pytest

from adapterserve.training.data import Columns, DataError, label_names, load_examples, resolve_path, split


def test_csv_with_bad_bytes_is_decoded_line_by_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(
        b"\xef\xbb\xbfsentiment,text\r\npositive,caf\xc3\xa9 ok\r\nnegative,bad \xd5\xa2_\x8a bytes\r\n"
        b'neutral,"quoted, with comma"\r\n'
    )
    ex, rep = load_examples(str(p), "classification", Columns(label="sentiment"))
    assert [e.label for e in ex] == ["positive", "negative", "neutral"]
    assert ex[0].text == "café ok"  # valid UTF-8 lines are untouched
    assert ex[1].text.startswith("bad ") and "\ufffd" in ex[1].text and ex[1].text.endswith("bytes")
    assert ex[2].text == "quoted, with comma"
    assert rep.lines_with_bad_bytes == 1 and rep.rows_read == 3


def test_jsonl_with_bad_bytes_and_configurable_columns(tmp_path):
    p = tmp_path / "d.jsonl"
    lines = [
        json.dumps({"q": "a", "a": "b", "y": "yes"}).encode(),
        b'{"q": "x \xff y", "a": "z", "y": "no"}',
        b"not json",
        json.dumps({"q": "", "a": "b", "y": "no"}).encode(),
        json.dumps({"q": "c", "a": "d", "y": None}).encode(),
        b"",
    ]
    p.write_bytes(b"\n".join(lines))
    ex, rep = load_examples(str(p), "classification", Columns(text="q", pair="a", label="y"))
    assert [(e.text, e.pair, e.label) for e in ex] == [("a", "b", "yes"), ("x \ufffd y", "z", "no")]
    assert rep.lines_with_bad_bytes == 1
    assert rep.rows_skipped == 3 and set(rep.skipped_reasons) == {"invalid JSON line", "empty text", "missing label"}


def test_missing_column_is_a_clear_error(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("label,body\npos,hi\n")
    with pytest.raises(DataError, match="column 'text' not found.*body"):
        load_examples(str(p), "classification", Columns())
    with pytest.raises(DataError, match="does not exist"):
        load_examples(str(tmp_path / "nope.csv"), "classification", Columns())


def test_tsv_and_multilabel_csv_separator(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text('text\ttags\nhello\tb|a\nbye\t\nmore\t["c"]\n')
    ex, _ = load_examples(str(p), "multilabel", Columns(labels="tags", labels_separator="|"))
    assert [e.labels for e in ex] == [["a", "b"], [], ["c"]]
    assert label_names(ex, "multilabel") == ["a", "b", "c"]


def test_multilabel_jsonl_list(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        json.dumps({"text": "t", "labels": ["x", "y", "x"]}) + "\n" + json.dumps({"text": "u", "labels": "z,x"})
    )
    ex, _ = load_examples(str(p), "multilabel", Columns())
    assert [e.labels for e in ex] == [["x", "y"], ["x", "z"]]


def test_tagging_jsonl(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"words": ["John", "lives", "in", "Paris"], "ner": ["B-PER", "O", "O", "B-LOC"]},
                {"words": ["a", "b"], "ner": ["O"]},
            ]
        )
    )
    ex, rep = load_examples(str(p), "tagging", Columns(tokens="words", tags="ner"))
    assert len(ex) == 1 and ex[0].tags == ["B-PER", "O", "O", "B-LOC"]
    assert rep.skipped_reasons == {"tokens and tags differ in length": 1}
    assert label_names(ex, "tagging") == ["B-LOC", "B-PER", "O"]
    (tmp_path / "x.csv").write_text("tokens,tags\na,O\n")
    with pytest.raises(DataError, match="JSONL"):
        load_examples(str(tmp_path / "x.csv"), "tagging", Columns())


def test_dedupe_and_max_rows(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\na,x\nb,y\na,y\nc,x\nd,x\n")
    ex, rep = load_examples(str(p), "classification", Columns(), dedupe=True)
    assert [e.text for e in ex] == ["a", "b", "c", "d"] and rep.duplicates_dropped == 1
    ex, _ = load_examples(str(p), "classification", Columns(), max_rows=2)
    assert [e.text for e in ex] == ["a", "b"]


def test_pkg_url_finds_a_file_in_an_installed_package_without_importing_it():
    path = resolve_path("pkg://adapterserve/training/data.py")
    assert path.name == "data.py" and path.is_file()
    with pytest.raises(DataError, match="not installed"):
        resolve_path("pkg://no_such_package_xyz/a.csv")


def test_splits_are_disjoint_deterministic_and_sized():
    from adapterserve.training.data import Example

    ex = [Example(text=str(i), label="a") for i in range(1000)]
    tr, va, te = split(ex, 0.1, 0.2, seed=7)
    assert (len(tr), len(va), len(te)) == (700, 100, 200)
    ids = [{e.text for e in s} for s in (tr, va, te)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {str(i) for i in range(1000)}
    again = split(ex, 0.1, 0.2, seed=7)
    assert [[e.text for e in s] for s in again] == [[e.text for e in s] for s in (tr, va, te)]
    other = split(ex, 0.1, 0.2, seed=8)
    assert {e.text for e in other[2]} != ids[2]
    # the test split does not depend on the validation share: baselines with other options see the same test set
    assert [e.text for e in split(ex, 0.05, 0.2, seed=7)[2]] == [e.text for e in te]
    with pytest.raises(DataError):
        split(ex[:2], 0.5, 0.5, seed=0)


def test_folder_of_label_folders(tmp_path):
    """The BBC News / 20 Newsgroups layout: a sub-folder per label, one text per .txt file."""
    for label, texts in {"sport": ["a goal", "b match"], "tech": ["c chip", "d phone", "e app"]}.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            (tmp_path / label / f"{i:03}.txt").write_text(f"  {text}\n")
    (tmp_path / "tech" / "notes.md").write_text("not a text of the corpus")
    (tmp_path / "tech" / "bad.txt").write_bytes(b"caf\xe9 latte")
    examples, report = load_examples(str(tmp_path), "classification", Columns())
    assert [(e.text, e.label) for e in examples[:2]] == [("a goal", "sport"), ("b match", "sport")]
    assert len(examples) == 6 and report.lines_with_bad_bytes == 1
    assert label_names(examples, "classification") == ["sport", "tech"]
    with pytest.raises(DataError, match="tagging data must be JSONL"):
        load_examples(str(tmp_path), "tagging", Columns())
    with pytest.raises(DataError, match="at least 2 sub-folders"):
        load_examples(str(tmp_path / "sport"), "classification", Columns())
