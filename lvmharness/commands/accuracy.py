"""``lvm accuracy``: train the model ladder on Fashion-MNIST with fixed seeds and one budget, print params, GMACs,
top-1 on the 10,000 test images and training time, and write ``train_result`` records for ``lvm report``."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from lvmharness.core.argtypes import batch_size, int_at_least, output_folder, seconds
from lvmharness.core.errors import UserError
from lvmharness.core.parsing import MAX_SEED
from lvmharness.models.ladder import LADDER_ALIASES, LADDER_CONFIGS
from lvmharness.store.run_ids import new_run_id, validate_run_id

# The library's setting names -> this command's options.
OPTION_NAMES = {"results_dir": "--out", "work_dir": "--work-dir", "data_dir": "--data-dir", "dataset": "--data-dir",
                "distill_from": "--distill"}


def _model_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma list of aliases, e.g. ladder_resnet_tiny")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=LADDER_CONFIGS, default="quick",
                   help="quick: a class-balanced subset of 30,000 images, 1 epoch; full: all 60,000 images, 5 epochs, "
                        "with augmentation; both batch 128, AdamW lr 5e-3 (docs/accuracy.md)")
    p.add_argument("--models", type=_model_list, default=list(LADDER_ALIASES),
                   help="comma list of aliases (default: the whole ladder)")
    p.add_argument("--data-dir", default="data",
                   help="looks for <data-dir>/fashion-mnist/, then /usr/share/datasets/fashion-mnist/")
    p.add_argument("--out", type=output_folder, default="results", help="result store (run folders)")
    p.add_argument("--work-dir", type=output_folder, default="runs/accuracy", help="checkpoints")
    p.add_argument("--run-id", default=None, help="run folder name (default: a new time-ordered id)")
    p.add_argument("--device", default="cpu", help="cpu|cuda|cuda:N|mps|auto")
    p.add_argument("--seed", type=int_at_least(0, MAX_SEED), default=0)
    p.add_argument("--threads", type=int_at_least(1, 1024), default=None,
                   help="torch CPU threads (default: torch's, one per core); on a machine shared with other jobs, "
                        "1 avoids threads spinning against each other")
    p.add_argument("--epochs", type=int_at_least(1, 1_000_000), default=None,
                   help="override the configuration's epochs")
    p.add_argument("--batch-size", type=batch_size, default=None, help="override the configuration's batch")
    p.add_argument("--train-images", type=int_at_least(10, 60_000), default=None,
                   help="override the configuration's training subset (class-balanced)")
    p.add_argument("--finetune-epochs", type=int_at_least(1, 1_000_000), default=None,
                   help="epochs of each phase-2 run (default: the configuration's, 10)")
    p.add_argument("--latency-budget-s", type=seconds, default=0.5,
                   help="seconds of timed rounds for each trained model's batch-1 latency")
    p.add_argument("--max-steps-per-epoch", type=int_at_least(1, 2**40), default=None, help=argparse.SUPPRESS)
    p.add_argument("--distill", action="store_true",
                   help="also train the ladder's DeiT with its best CNN as teacher (DeiT hard distillation)")
    p.add_argument("--finetune", metavar="MODEL", default=None,
                   help="also fine-tune MODEL's checkpoint on scikit-learn's digits (phase 2) vs from scratch")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run(args: argparse.Namespace) -> int:
    # Imported here: the training engine imports torch, and ``lvm accuracy --help`` answers without it.
    from lvmharness.train.accuracy import BUDGETS, pareto, run_ladder, table

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)  # recorded in each record's provenance (settings)
    budget = BUDGETS[args.config]
    if args.epochs is not None:
        budget = replace(budget, epochs=args.epochs)
    if args.finetune_epochs is not None:
        budget = replace(budget, finetune_epochs=args.finetune_epochs)
    if args.batch_size is not None:
        budget = replace(budget, batch_size=args.batch_size)
    if args.train_images is not None:
        budget = replace(budget, train_images=args.train_images)
    try:
        run_id = validate_run_id(args.run_id) if args.run_id else new_run_id()
    except ValueError as exc:
        raise UserError(f"--run-id: {exc}") from None
    if (Path(args.out) / run_id).exists():
        raise UserError(f"--run-id {run_id}: {Path(args.out) / run_id} already exists; choose another run id")
    t0 = time.perf_counter()
    try:
        res = run_ladder(args.models, budget=budget, results_dir=args.out, work_dir=args.work_dir, run_id=run_id,
                         data_dir=args.data_dir, device=args.device, seed=args.seed, distill=args.distill,
                         finetune=args.finetune, max_steps_per_epoch=args.max_steps_per_epoch,
                         latency_budget_s=args.latency_budget_s, quiet=True)
    except UserError as exc:  # name the options as this command spells them
        raise UserError(exc.render(lambda field: OPTION_NAMES.get(field, "--" + field.replace("_", "-")))) from None
    wall = time.perf_counter() - t0
    images = "all 60,000" if budget.train_images is None else f"{budget.train_images:,}"
    print(f"\nFashion-MNIST, {args.config}: {images} training images, {budget.epochs} epoch(s), batch "
          f"{budget.batch_size}, seed {args.seed}; top-1/top-5 on the 10,000 test images; device {args.device}, "
          f"{torch_threads()} thread(s)")
    print(table(res.results))
    for name, cost in (("GMACs", lambda r: r.gmacs), ("params", lambda r: float(r.params)),
                       ("training time", lambda r: r.train_s)):
        _, dominated = pareto(res.results, cost)
        print(f"dominated in top-1 vs {name}: {', '.join(dominated) or 'none'}")
    if res.distill:
        without, with_t = res.distill
        print(f"\nDeiT distillation ({with_t.alias}, same budget): without teacher {without.top1:.2f}%, with "
              f"teacher {with_t.options['teacher']} {with_t.top1:.2f}%")
    if res.finetune:
        scratch, tuned = res.finetune
        print(f"\nPhase 2 on digits ({tuned.alias}, {budget.finetune_epochs} epochs): from scratch "
              f"{scratch.top1:.2f}%, fine-tuned from Fashion-MNIST {tuned.top1:.2f}% "
              f"(records: {res.finetune_run_dir})")
    print(f"\nwall time {wall:.1f} s; records: {res.run_dir}; report: lvm report {res.run_dir}")
    return 0
