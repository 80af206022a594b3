"""Extractive question answering: contexts into windows, start/end logits into answers.

The reference is the Hugging Face question-answering pipeline (transformers 4.57,
pipelines/question_answering.py, fast-tokenizer path, handle_impossible_answer=False, align_to_words=True):
its answers are what a client migrating from it expects, so its rules are followed to the letter,
with the same numpy float32 operations so ties and rounding break the same way:

- windows: the tokenizer's (question, context) pair with truncation="only_second", max_length=max_seq_len,
  stride=doc_stride (the overlap, in tokens) and return_overflowing_tokens; each window is one batch row.
- p_mask: every token outside the context is masked (-10000) before the softmax EXCEPT [CLS], which stays
  in the denominator; its probability is then set to 0, so it is never the answer.
- spans: the outer product of start and end probabilities, upper-triangular, at most max_answer_len
  tokens; the 2*top_k+10 best per window (more, because word widening can merge some).
- each span is widened to whole words (token_to_word / word_to_chars), and an answer whose text equals
  (ignoring case) one already found, in this window or an earlier one, adds its score to it.
- the answers sorted by score (stable), the top_k kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadRequest
from .tokenize import Encoded

PIPELINE_MAX_SEQ_LEN = 384  # the pipeline's cap: min(tokenizer.model_max_length, 384)


@dataclass
class QAWindows:
    """One (question, context) pair cut into windows: model rows, their p_masks and tokenizer encodings."""

    context: str
    rows: list[Encoded]
    p_masks: list[np.ndarray]  # int, [T]: 1 = cannot be in the answer
    encodings: list  # tokenizers.Encoding per window (word and character alignment)


def default_stride(max_seq_len: int) -> int:
    return min(max_seq_len // 2, 128)


def make_windows(tokenizer, question: str, context: str, max_seq_len: int, doc_stride: int, index: int) -> QAWindows:
    """Raises BadRequest (naming input `index`) for what the tokenizer cannot window."""
    if not question.strip():
        raise BadRequest(f"inputs[{index}].question is empty; ask a question", input=index)
    if not context.strip():
        raise BadRequest(f"inputs[{index}].context is empty; send the text the answer is to be found in", input=index)
    q_len = len(tokenizer(question, add_special_tokens=False, verbose=False)["input_ids"])
    room = max_seq_len - q_len - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= 0:
        raise BadRequest(
            f"inputs[{index}].question has {q_len} tokens, leaving no room for the context in a "
            f"{max_seq_len}-token window; shorten the question",
            input=index,
            tokens=q_len,
            limit=max_seq_len,
        )
    c_len = len(tokenizer(context, add_special_tokens=False, verbose=False)["input_ids"])
    if c_len == 0:
        raise BadRequest(f"inputs[{index}].context has no tokens; send the text the answer is in", input=index)
    if c_len > room and doc_stride >= room:
        raise BadRequest(
            f"doc_stride {doc_stride} must be smaller than the {room} context tokens that fit in one window "
            f"beside inputs[{index}].question; lower doc_stride or shorten the question",
            input=index,
            doc_stride=doc_stride,
            room=room,
        )
    enc = tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_token_type_ids=True,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    cls_id = tokenizer.cls_token_id
    rows, p_masks, encodings = [], [], []
    for w in range(len(enc["input_ids"])):
        ids = enc["input_ids"][w]
        p_mask = np.array([tok != 1 for tok in enc.sequence_ids(w)], dtype=np.int64)
        if cls_id is not None:
            p_mask[np.asarray(ids) == cls_id] = 0  # [CLS] stays in the softmax (the pipeline's rule)
        rows.append(Encoded(input_ids=ids, token_type_ids=enc["token_type_ids"][w]))
        p_masks.append(p_mask)
        encodings.append(enc.encodings[w])
    return QAWindows(context, rows, p_masks, encodings)


def select_spans(start: np.ndarray, end: np.ndarray, p_mask: np.ndarray, top_k: int, max_answer_len: int):
    """The pipeline's select_starts_ends + decode_spans for one window (logits [T], float32)."""
    start, end = start[None].astype(np.float32), end[None].astype(np.float32)
    desired = np.abs(p_mask[None] - 1)  # 1 for context tokens and [CLS] (attention mask: all ones, unpadded)
    masked = desired == 0.0
    start = np.where(masked, -10000.0, start)
    end = np.where(masked, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    start[0, 0] = end[0, 0] = 0.0  # [CLS] was in the denominator; it is never an answer
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = [np.argmax(flat)]
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        idx = np.argpartition(-flat, top_k)[0:top_k]
        order = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    # The pipeline tests membership in desired.nonzero(), a (rows, cols) tuple of the [1, T] mask: the row
    # indices (all 0) join the set, so position 0 always counts as desired. Kept, to give its answers.
    allowed = desired.nonzero()
    keep = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends]


def _char_span(encoding, s: int, e: int) -> tuple[int, int]:
    """Token span -> character span in the context, widened to whole words (offsets where words fail)."""
    try:
        start_word, end_word = encoding.token_to_word(s), encoding.token_to_word(e)
        return encoding.word_to_chars(start_word, sequence_index=1)[0], encoding.word_to_chars(
            end_word, sequence_index=1
        )[1]
    except Exception:  # [CLS] has no word (the pipeline catches the same failure)
        return encoding.offsets[s][0], encoding.offsets[e][1]


def answers(windows: QAWindows, logits: list, top_k: int, max_answer_len: int) -> list[dict]:
    """logits: per window a [T, 2] tensor or array (start, end). Best first, at most top_k."""
    found: list[dict] = []
    by_text: dict[str, dict] = {}
    for p_mask, encoding, lg in zip(windows.p_masks, windows.encodings, logits):
        lg = np.asarray(lg, dtype=np.float32)
        starts, ends, scores = select_spans(lg[:, 0], lg[:, 1], p_mask, top_k * 2 + 10, max_answer_len)
        for s, e, score in zip(starts, ends, scores):
            a, b = _char_span(encoding, int(s), int(e))
            text = windows.context[a:b]
            same = by_text.get(text.lower())
            if same is not None:
                same["score"] += score.item()
            else:
                by_text[text.lower()] = {"score": score.item(), "start": int(a), "end": int(b), "answer": text}
                found.append(by_text[text.lower()])
    return sorted(found, key=lambda x: x["score"], reverse=True)[:top_k]
