"""The training loop: AdamW, linear warm-up and decay, validation macro-F1, early stopping, best checkpoint."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .. import tasks
from ..tasks import metrics
from .features import FeatureItem, eval_batches, train_batches
from .model import TrainModel

Collate = Callable[[list], dict]


@dataclass
class LoopConfig:
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    patience: int = 2  # evaluations without improvement before stopping; 0 = never stop early
    eval_steps: int = 0  # also evaluate every N optimizer steps (0: at the end of each epoch only)
    seed: int = 42
    progress: bool = True


@dataclass
class LoopResult:
    best_validation: dict | None
    best_step: int
    steps: int
    epochs_run: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    train_s: float = 0.0
    eval_s: float = 0.0


def log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def _bar(total: int, desc: str, enabled: bool, leave: bool = True):
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        file=sys.stderr,
        disable=not enabled,
        leave=leave,
        dynamic_ncols=True,
        mininterval=0.2 if interactive else 30.0,
    )


@torch.no_grad()
def predict(
    model: TrainModel, data: list, collate: Collate, batch_size: int, progress: bool = False, desc: str = "eval"
) -> list[torch.Tensor]:
    """Per-item logits in the original order (tagging: [T_i, L], cut to the item's length)."""
    batches, order = eval_batches(data, batch_size)
    out: list[torch.Tensor | None] = [None] * len(data)
    k = 0
    with _bar(len(batches), desc, progress, leave=False) as bar:
        for items in batches:
            logits = model.logits(collate(items), train=False)
            for j, item in enumerate(items):
                out[order[k]] = (logits[j, : len(item)] if logits.dim() == 3 else logits[j]).float().cpu()
                k += 1
            bar.update(1)
    return out


def evaluate(
    model: TrainModel,
    data: list,
    collate: Collate,
    task: str,
    labels: list[str],
    batch_size: int,
    progress: bool = False,
    desc: str = "eval",
) -> dict:
    logits = predict(model, data, collate, batch_size, progress, desc)
    return tasks.get(task).metrics([it.target for it in data], logits, labels)


@torch.no_grad()
def cache_features(
    model: TrainModel, data: list, collate: Collate, batch_size: int, progress: bool, desc: str
) -> list[FeatureItem]:
    """Head-only training: run the frozen backbone once per item and keep the head's input."""
    batches, order = eval_batches(data, batch_size)
    out: list[FeatureItem | None] = [None] * len(data)
    k = 0
    with _bar(len(batches), desc, progress, leave=False) as bar:
        for items in batches:
            feats = model.features(collate(items))
            for j, item in enumerate(items):
                f = feats[j, : len(item)] if feats.dim() == 3 else feats[j]
                out[order[k]] = FeatureItem(f.cpu().clone(), item.target)
                k += 1
            bar.update(1)
    return out


def train(
    model: TrainModel, train_data: list, val_data: list, collate: Collate, task: str, labels: list[str], cfg: LoopConfig
) -> LoopResult:
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = (len(train_data) + cfg.batch_size - 1) // cfg.batch_size
    total = max(1, steps_per_epoch * cfg.epochs)
    warmup = int(total * cfg.warmup_ratio)
    opt = torch.optim.AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    res = LoopResult(best_validation=None, best_step=0, steps=0, epochs_run=0, stopped_early=False)
    best_f1, best_state, bad_evals = -1.0, None, 0
    t_start = time.perf_counter()

    def do_eval(epoch: int) -> bool:
        """Evaluate on validation; returns True when training should stop."""
        nonlocal best_f1, best_state, bad_evals
        t = time.perf_counter()
        m = evaluate(model, val_data, collate, task, labels, cfg.eval_batch_size, cfg.progress, "validation")
        res.eval_s += time.perf_counter() - t
        improved = m["macro_f1"] > best_f1
        res.history.append(
            {
                "step": res.steps,
                "epoch": epoch,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "improved": improved,
            }
        )
        log(f"step {res.steps} (epoch {epoch}): validation {metrics.summary(m)}" + ("  *best*" if improved else ""))
        if improved:
            best_f1, best_state, bad_evals = m["macro_f1"], model.snapshot(), 0
            res.best_validation, res.best_step = m, res.steps
            return False
        bad_evals += 1
        return cfg.patience > 0 and bad_evals >= cfg.patience

    stop = False
    for epoch in range(1, cfg.epochs + 1):
        batches = train_batches(train_data, cfg.batch_size, rng)
        running, seen = 0.0, 0  # seen: steps done in this epoch
        evaluated_at = -1
        with _bar(len(batches), f"epoch {epoch}/{cfg.epochs}", cfg.progress) as bar:
            for items in batches:
                batch = collate(items)
                logits = model.logits(batch, train=True)
                loss = tasks.get(task).loss(logits, batch["target"].to(logits.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                res.steps += 1
                running, seen = running + loss.item(), seen + 1
                bar.update(1)
                bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
                if val_data and cfg.eval_steps and res.steps % cfg.eval_steps == 0:
                    evaluated_at = res.steps
                    if do_eval(epoch):
                        stop = True
                        break
        res.epochs_run = epoch - 1 + seen / max(1, len(batches))
        if stop:
            res.stopped_early = True
            break
        if val_data and evaluated_at != res.steps and do_eval(epoch):
            res.stopped_early = epoch < cfg.epochs
            break
    if best_state is not None:
        model.restore(best_state)
    else:
        res.best_step = res.steps
    res.train_s = time.perf_counter() - t_start - res.eval_s
    return res
