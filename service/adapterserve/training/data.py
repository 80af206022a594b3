"""Training data: CSV or JSONL files, or a folder of label folders -> examples, labels and deterministic splits.

A folder of label folders is the layout of many classic corpora (BBC News, 20 Newsgroups, IMDB): each
sub-folder is named by its label and holds one text per .txt file (scikit-learn's load_files reads the same).

Files are decoded line by line: UTF-8 where a line is valid, otherwise UTF-8 with U+FFFD for the bad bytes
(many scraped corpora mix encodings), and the number of such lines is reported. Rows without text or label
are skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from .. import tasks
from ..tasks.base import Columns, Example

__all__ = ["Columns", "DataError", "Example", "label_names", "load_examples", "resolve_path", "split"]


class DataError(ValueError):
    """The training data cannot be used as given (missing columns, unknown format, too few rows)."""


@dataclass
class LoadReport:
    path: str
    rows_read: int = 0
    rows_skipped: int = 0
    lines_with_bad_bytes: int = 0
    duplicates_dropped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.rows_skipped += 1
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + 1


def resolve_path(spec: str) -> Path:
    """A file or folder path, or pkg://<package>/<path inside it> for data shipped in an installed package.

    The package is located with importlib.util.find_spec, without importing it (some data packages do not
    import cleanly on current Python stacks).
    """
    if spec.startswith("pkg://"):
        package, _, inner = spec[len("pkg://") :].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise DataError(f"{spec}: Python package {package!r} is not installed (pip install {package})")
        path = Path(list(found.submodule_search_locations)[0]) / inner
    else:
        path = Path(spec)
    if not (path.is_file() or path.is_dir()):
        raise DataError(f"data file {spec!r} does not exist")
    return path


def read_text_robust(path: Path, report: LoadReport) -> str:
    """UTF-8 per line (BOM stripped); a line that is not valid UTF-8 is decoded with replacement characters."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    out = []
    for line in raw.splitlines(keepends=True):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            report.lines_with_bad_bytes += 1
            out.append(line.decode("utf-8", errors="replace"))
    return "".join(out)


def file_format(path: Path) -> str:
    if path.is_dir():
        return "folders"
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise DataError(f"{path.name}: unknown data format; use .csv / .tsv or .jsonl")


def _folder_records(path: Path, cols: Columns, report: LoadReport):
    """{text, label} per .txt file of each label sub-folder, in sorted order (splits stay deterministic)."""
    labels = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(labels) < 2:
        raise DataError(f"{path}: a folder of label folders needs at least 2 sub-folders, found {len(labels)}")
    for label in labels:
        for file in sorted(label.glob("*.txt")):
            yield {cols.text: read_text_robust(file, report).strip(), cols.label: label.name}


def _records(path: Path, cols: Columns, report: LoadReport, task):
    if path.is_dir():
        yield from _folder_records(path, cols, report)
        return
    text = read_text_robust(path, report)
    if path.name.lower().endswith(".json"):  # one JSON document (a list, SQuAD's nested file), else JSONL
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if doc is not None:
            try:
                yield from task.json_records(doc)
            except ValueError as e:
                raise DataError(f"{path.name}: {e}") from None
            return
    if file_format(path) == "jsonl":
        for _n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                report.skip("invalid JSON line")
                continue
            if not isinstance(rec, dict):
                report.skip("JSON line is not an object")
                continue
            yield rec
        return
    delimiter = cols.delimiter or ("\t" if path.name.lower().endswith(".tsv") else ",")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    yield from reader


def _require(column: str, fieldnames: set[str]) -> None:
    if column not in fieldnames:
        raise DataError(f"column {column!r} not found; the data has columns {sorted(fieldnames)}")


def load_examples(
    spec: str, task: str, cols: Columns, dedupe: bool = False, max_rows: int = 0
) -> tuple[list[Example], LoadReport]:
    path = resolve_path(spec)
    report = LoadReport(path=spec)
    t = tasks.get(task)
    if file_format(path) not in t.data_formats:
        formats = " or ".join(f.upper() for f in t.data_formats)
        raise DataError(f"{task} data must be {formats} {t.data_help}".rstrip())
    examples: list[Example] = []
    seen: set = set()
    checked = False
    for rec in _records(path, cols, report, t):
        report.rows_read += 1
        if not checked:  # the first record tells whether the configured columns exist at all
            for column in t.required_columns(cols):
                _require(column, set(rec))
            checked = True
        ex = t.example(rec, cols, report.skip)
        if ex is None:
            continue
        if dedupe:
            key = (ex.text, ex.pair, tuple(ex.tokens or ()))
            if key in seen:
                report.duplicates_dropped += 1
                continue
            seen.add(key)
        examples.append(ex)
        if max_rows and len(examples) >= max_rows:
            break
    if not examples:
        raise DataError(f"{spec}: no usable rows (read {report.rows_read}, skipped {report.skipped_reasons})")
    return examples, report


def label_names(examples: list[Example], task: str) -> list[str]:
    """The head's outputs in order: the distinct labels, sorted (unless the task fixes them, as qa does)."""
    t = tasks.get(task)
    names: set[str] = set()
    for ex in examples:
        names.update(t.example_labels(ex))
    return t.label_names(names)


def split(
    examples: list[Example], validation: float, test: float, seed: int
) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, validation, test): one seeded shuffle, test first, then validation; disjoint by construction."""
    for name, frac in (("validation", validation), ("test", test)):
        if not 0 <= frac < 1:
            raise DataError(f"--{name}-split must be in [0, 1), got {frac}")
    n = len(examples)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = int(round(n * test))
    n_val = int(round(n * validation))
    if validation > 0:
        n_val = max(1, n_val)
    if n - n_test - n_val < 1:
        raise DataError(f"{n} rows are too few for validation split {validation} and test split {test}")
    pick = lambda idx: [examples[i] for i in idx]
    return pick(order[n_test + n_val :]), pick(order[n_test : n_test + n_val]), pick(order[:n_test])
