"""Extractive question answering: per-token start and end logits; answers are spans of the context.

Serving (POST /answer) is engine/qa_spans.py. Training data: SQuAD-shaped records, each a question, a
context and an answer given by its text and character start:
- JSONL, one record per line: {"question", "context", "answers": {"text": [...], "answer_start": [...]}}
  (Hugging Face `squad` rows; the first answer is used), or "answers": [{"text", "answer_start"}, ...], or a
  plain answer text in --answer-column with its start in --answer-start-column;
- JSON, the official SQuAD file: {"data": [{"paragraphs": [{"context", "qas": [...]}]}]} (unanswerable
  questions are skipped and counted).
An answer whose text is not at its start in the context is skipped and counted, never silently moved.

Training rows: the (question, context) pair in windows as served (truncation "only_second", stride = the
overlap, min(max_length // 2, 128)), each window one row whose target is the answer's first and last token,
or [CLS] (0, 0) when the answer is not wholly inside that window (as Hugging Face's run_qa does).

Metrics (per window that holds the answer): the best span by start + end logit among context tokens
(start <= end, at most MAX_ANSWER_TOKENS): "exact_match" (also reported as "accuracy") and "f1" (the mean
token-overlap F1 with the gold span, also reported as "macro_f1", which early stopping uses). Token-span
metrics on windows, not SQuAD's text-normalised EM/F1 over whole contexts.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from .base import Columns, Example, Skip, Task

MAX_ANSWER_TOKENS = 30


def _first_answer(rec: dict, cols: Columns):
    ans = rec.get(cols.answer)
    if isinstance(ans, dict):  # HF datasets: {"text": [...], "answer_start": [...]}
        texts, starts = ans.get("text") or [], ans.get("answer_start") or []
        return (texts[0], starts[0]) if texts and starts else (None, None)
    if isinstance(ans, list):  # SQuAD: [{"text", "answer_start"}, ...]
        first = ans[0] if ans and isinstance(ans[0], dict) else {}
        return first.get("text"), first.get("answer_start")
    return ans, rec.get(cols.answer_start)


def best_span(logits: torch.Tensor, context_mask: list[int]) -> tuple[int, int]:
    ctx = torch.tensor(context_mask[: logits.shape[0]], dtype=torch.bool)
    start = logits[:, 0].masked_fill(~ctx, float("-inf"))
    end = logits[:, 1].masked_fill(~ctx, float("-inf"))
    scores = start[:, None] + end[None, :]
    T = scores.shape[0]
    i = torch.arange(T)
    valid = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < MAX_ANSWER_TOKENS)
    flat = int(scores.masked_fill(~valid, float("-inf")).argmax())
    return flat // T, flat % T


class QuestionAnswering(Task):
    name = "qa"
    route = "answer"
    per_token = True
    default_head_layers = 1
    data_formats = ("jsonl",)  # .jsonl, or one .json document (SQuAD's nested file)
    data_help = "(SQuAD-shaped: question, context, answer text and its start)"
    adapterhub_head_type = "question_answering"
    peft_task_type = "QUESTION_ANS"
    peft_head_module = "qa_outputs"
    head_outputs = 2  # start and end logits

    def json_records(self, doc) -> Iterable[dict]:
        if isinstance(doc, dict) and isinstance(doc.get("data"), list):  # the official SQuAD file
            for article in doc["data"]:
                for para in article.get("paragraphs", []) if isinstance(article, dict) else []:
                    for qa in para.get("qas", []) if isinstance(para, dict) else []:
                        if isinstance(qa, dict):
                            yield {**qa, "context": para.get("context")}
            return
        yield from super().json_records(doc)

    def required_columns(self, cols: Columns) -> list[str]:
        return [cols.question, cols.context]

    def example(self, rec: dict, cols: Columns, skip: Skip) -> Example | None:
        question, context = rec.get(cols.question), rec.get(cols.context)
        if not isinstance(question, str) or not question.strip() or not isinstance(context, str) or not context.strip():
            skip("empty question or context")
            return None
        if rec.get("is_impossible"):
            skip("unanswerable question")
            return None
        text, start = _first_answer(rec, cols)
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            skip("no answer text and start")
            return None
        if context[start : start + len(text)] != text:
            skip("answer text is not at answer_start in the context")
            return None
        return Example(text=question, pair=context, label=text, answer_start=start)

    def example_labels(self, ex: Example):
        return ("start", "end")

    def label_names(self, names: set[str]) -> list[str]:
        return ["start", "end"]  # the head's outputs in the libraries' order, not sorted

    def tokenize(self, tokenizer, examples: list[Example], max_length: int):
        """Every window of every example as one row, with its target worked out here, where the offsets are:
        (start token, end token, context mask), (0, 0) when the answer is not wholly inside the window. An
        example whose question leaves no more room than the stride is left out (the tokenizer refuses it)."""
        stride = min(max_length // 2, 128)
        out = {"input_ids": [], "token_type_ids": [], "targets": []}
        for ex in examples:
            q_len = len(tokenizer(ex.text, add_special_tokens=False, verbose=False)["input_ids"])
            if max_length - q_len - tokenizer.num_special_tokens_to_add(pair=True) <= stride:
                continue
            enc = tokenizer(
                ex.text,
                ex.pair,
                truncation="only_second",
                max_length=max_length,
                stride=stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_token_type_ids=True,
            )
            a, b = ex.answer_start, ex.answer_start + len(ex.label)
            for w in range(len(enc["input_ids"])):
                seq, offsets = enc.sequence_ids(w), enc["offset_mapping"][w]
                ctx = [i for i, s in enumerate(seq) if s == 1]
                start = next((i for i in ctx if offsets[i][0] <= a < offsets[i][1]), None)
                end = next((i for i in reversed(ctx) if offsets[i][0] < b <= offsets[i][1]), None)
                span = (start, end) if start is not None and end is not None else (0, 0)
                out["input_ids"].append(enc["input_ids"][w])
                out["token_type_ids"].append(enc["token_type_ids"][w])
                out["targets"].append((*span, [1 if s == 1 else 0 for s in seq]))
        return out

    def targets(self, encoding, examples: list[Example], index: dict[str, int]) -> list:
        return encoding["targets"]  # one per window, made by tokenize

    def stack_targets(self, targets: list, length: int) -> torch.Tensor:
        return torch.tensor([t[:2] for t in targets], dtype=torch.long)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """BertForQuestionAnswering's: the mean of the start and end cross-entropies over the window."""
        return (F.cross_entropy(logits[..., 0], target[:, 0]) + F.cross_entropy(logits[..., 1], target[:, 1])) / 2

    def metrics(self, targets: list, logits: list[torch.Tensor], labels: list[str]) -> dict:
        exact, f1s = 0, []
        for (gs, ge, context_mask), lg in zip(targets, logits):
            if gs == 0 and ge == 0:
                continue  # the answer is in another window
            ps, pe = best_span(lg, context_mask)
            exact += (ps, pe) == (gs, ge)
            overlap = max(0, min(pe, ge) - max(ps, gs) + 1)
            f1s.append(0.0 if overlap == 0 else 2 * overlap / ((pe - ps + 1) + (ge - gs + 1)))
        n = len(f1s)
        em, f1 = (exact / n if n else 0.0), (sum(f1s) / n if n else 0.0)
        return {"accuracy": em, "macro_f1": f1, "exact_match": em, "f1": f1, "n": n}


TASK = QuestionAnswering()
