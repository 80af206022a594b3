"""The typed configuration of one `adapterserve train` run: what the CLI parses and the runner reads.

Defaults live here (and the learning rate's in training/kinds.py, per kind); the CLI's argparse defaults are
read from this class, so the two cannot disagree.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from .. import tasks
from . import kinds
from .data import Columns


@dataclass
class TrainConfig:
    # data
    data: str = ""
    task: str = "classification"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    labels_column: str = "labels"
    labels_separator: str = ","
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    question_column: str = "question"
    context_column: str = "context"
    answer_column: str = "answers"
    answer_start_column: str = "answer_start"
    delimiter: str | None = None
    dedupe: bool = False
    max_rows: int = 0
    max_train_rows: int = 0
    validation_split: float = 0.1
    test_split: float = 0.1
    validation_file: str | None = None
    test_file: str | None = None
    max_length: int = 128
    # model
    kind: str = "seq_bn"
    backbone: str | None = None
    reduction_factor: float = 16
    lora_r: int = 8
    lora_alpha: float = 16
    lora_target_modules: str = "query,value"
    prefix_length: int = 10
    head_layers: int | None = None
    dropout: float = 0.1
    # training
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float | None = None  # None: the kind's default_lr
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    patience: int = 2
    eval_steps: int = 0
    seed: int = 42
    threads: int = 0
    device: str = "cpu"
    no_progress: bool = False
    # output
    output: str | None = None
    name: str | None = None
    publish: str | None = None
    description: str = ""
    command_line: str = ""  # the command line that reproduces this run (recorded in eval.json)

    def __post_init__(self) -> None:
        tasks.get(self.task)  # unknown names fail here, with the known ones listed
        kinds.get(self.kind)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, command_line: str = "") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in known}, command_line=command_line)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else kinds.get(self.kind).default_lr

    @property
    def columns(self) -> Columns:
        return Columns(
            text=self.text_column,
            pair=self.text_pair_column,
            label=self.label_column,
            labels=self.labels_column,
            labels_separator=self.labels_separator,
            tokens=self.tokens_column,
            tags=self.tags_column,
            delimiter=self.delimiter,
            question=self.question_column,
            context=self.context_column,
            answer=self.answer_column,
            answer_start=self.answer_start_column,
        )

    @property
    def lora_targets(self) -> list[str]:
        return [s.strip() for s in self.lora_target_modules.split(",") if s.strip()]


DEFAULTS = TrainConfig()
