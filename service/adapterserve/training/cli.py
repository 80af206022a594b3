"""`adapterserve train`: argument parsing into a TrainConfig; `runner.train_command` does the work."""

from __future__ import annotations

import argparse

from .. import tasks
from . import kinds
from .config import DEFAULTS as D
from .config import TrainConfig

DESCRIPTION = """\
Fine-tune an adapter and its prediction head on the frozen backbone, then write a folder the service loads
as is: seq_bn / double_seq_bn / ia3 (IA3Config) / prefix (PrefixTuningConfig, flat) in AdapterHub `adapters`
layout, lora in PEFT layout (plus adapterserve.json with the label names). Accuracy and macro-F1 on the
validation and held-out test splits are printed and saved as eval.json in the folder.

--kind head (head only, frozen backbone) and --kind full (full fine-tuning of backbone + head) are
baselines: they report metrics and write eval.json only, no servable adapter.

Data: CSV/TSV (header row) or JSONL. Classification: --text-column and --label-column; multi-label:
--labels-column (a JSON list in JSONL, a --labels-separator joined string in CSV); tagging: JSONL with a
list of words (--tokens-column) and one tag per word (--tags-column); question answering (--task qa):
SQuAD JSON or JSONL with a question, a context and an answer text with its character start. --data may be
pkg://<package>/<path> for a file inside an installed Python package.
"""


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _fraction(s: str) -> float:
    v = float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v}")
    return v


def _number(s: str):
    v = float(s)
    return int(v) if v.is_integer() else v


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument(
        "--data",
        required=True,
        help="training file (.csv/.tsv or .jsonl), a folder of label folders of .txt files, or pkg://<package>/<path>",
    )
    d.add_argument("--task", choices=tasks.names(), default=D.task)
    d.add_argument("--text-column", default=D.text_column)
    d.add_argument("--text-pair-column", default=D.text_pair_column, help="second text of a pair (sentence-pair tasks)")
    d.add_argument("--label-column", default=D.label_column, help="single-label classification")
    d.add_argument(
        "--labels-column", default=D.labels_column, help="multi-label: JSON list, or separator-joined string"
    )
    d.add_argument(
        "--labels-separator", default=D.labels_separator, help="separator of --labels-column strings (default ',')"
    )
    d.add_argument("--tokens-column", default=D.tokens_column, help="tagging: the list of words")
    d.add_argument("--tags-column", default=D.tags_column, help="tagging: the list of tags, one per word")
    d.add_argument("--question-column", default=D.question_column, help="qa: the question")
    d.add_argument("--context-column", default=D.context_column, help="qa: the context the answer is in")
    d.add_argument(
        "--answer-column",
        default=D.answer_column,
        help='qa: {"text": [...], "answer_start": [...]}, a list of {"text", "answer_start"}, or the answer text',
    )
    d.add_argument("--answer-start-column", default=D.answer_start_column, help="qa: the start of a plain answer text")
    d.add_argument("--delimiter", default=D.delimiter, help="CSV delimiter (default: ',' or tab for .tsv)")
    d.add_argument("--dedupe", action="store_true", help="drop rows whose input repeats an earlier row's")
    d.add_argument("--max-rows", type=int, default=D.max_rows, help="use only the first N usable rows (0: all)")
    d.add_argument(
        "--max-train-rows",
        type=int,
        default=D.max_train_rows,
        help="cap the training split only, after splitting (validation and test stay whole)",
    )
    d.add_argument("--validation-split", type=_fraction, default=D.validation_split)
    d.add_argument("--test-split", type=_fraction, default=D.test_split, help="held-out test share (0: no test split)")
    d.add_argument(
        "--validation-file", default=D.validation_file, help="use this file for validation instead of a split"
    )
    d.add_argument("--test-file", default=D.test_file, help="use this file for the test instead of a split")
    d.add_argument("--max-length", type=_positive_int, default=D.max_length, help="token limit per input")

    m = p.add_argument_group("model")
    m.add_argument("--kind", choices=kinds.names(), default=D.kind)
    m.add_argument("--backbone", default=D.backbone, help="backbone folder or hub id (default: the service's default)")
    m.add_argument(
        "--reduction-factor", type=_number, default=D.reduction_factor, help="bottleneck width = hidden // this"
    )
    m.add_argument("--lora-r", type=_positive_int, default=D.lora_r)
    m.add_argument(
        "--prefix-length", type=_positive_int, default=D.prefix_length, help="--kind prefix: prefix tokens per layer"
    )
    m.add_argument("--lora-alpha", type=_number, default=D.lora_alpha)
    m.add_argument(
        "--lora-target-modules",
        default=D.lora_target_modules,
        help="comma list: query, key, value, attention.output.dense, intermediate.dense, output.dense",
    )
    m.add_argument(
        "--head-layers",
        type=_positive_int,
        default=D.head_layers,
        help="flex head depth (default 2; tagging 1); a LoRA classifier always has 1 layer",
    )
    m.add_argument("--dropout", type=float, default=D.dropout, help="dropout on the head input during training")

    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=_positive_int, default=D.epochs)
    t.add_argument("--batch-size", type=_positive_int, default=D.batch_size)
    t.add_argument("--eval-batch-size", type=_positive_int, default=D.eval_batch_size)
    t.add_argument(
        "--lr",
        type=float,
        default=D.lr,
        help="peak learning rate (default per kind: "
        + ", ".join(f"{k} {kinds.get(k).default_lr:g}" for k in kinds.names())
        + ")",
    )
    t.add_argument("--weight-decay", type=float, default=D.weight_decay)
    t.add_argument("--warmup-ratio", type=float, default=D.warmup_ratio)
    t.add_argument(
        "--patience",
        type=int,
        default=D.patience,
        help="stop after this many validations without a better macro-F1 (0: never)",
    )
    t.add_argument(
        "--eval-steps",
        type=int,
        default=D.eval_steps,
        help="also validate every N optimizer steps (default: once per epoch)",
    )
    t.add_argument("--seed", type=int, default=D.seed)
    t.add_argument("--threads", type=int, default=D.threads, help="torch CPU threads (0: torch's default)")
    t.add_argument("--device", default=D.device, help="cpu | cuda | auto")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    o = p.add_argument_group("output")
    o.add_argument("--output", default=D.output, help="adapter folder to write (default: runs/<name>)")
    o.add_argument("--name", default=D.name, help="adapter name (default: the data file's name)")
    o.add_argument(
        "--publish",
        default=D.publish,
        metavar="STORE_URL",
        help="publish the folder to this adapter store (a directory or s3://...) under --name",
    )
    o.add_argument("--description", default=D.description, help="free text saved in adapterserve.json")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="fine-tune an adapter + head on the frozen backbone",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run, _train_parser=p)
    return p


def command_line(args: argparse.Namespace) -> str:
    """The `adapterserve train ...` line that reproduces this run: every option that differs from its default."""
    import shlex

    parser = getattr(args, "_train_parser", None)
    if parser is None:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
    words = ["adapterserve", "train"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from .runner import train_command

    return train_command(TrainConfig.from_namespace(args, command_line(args)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adapterserve")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)
