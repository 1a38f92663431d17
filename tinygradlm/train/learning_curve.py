"""Does pretraining pay?  A learning curve: ``finetune_classifier.py --compare_scratch``.

    for each label budget (2%, 5%, 10%, 25%, 100% of the training set)
        for each seed (3 by default)
            subset = label_budget_subsets(...)         class-balanced, nested, one per seed
            pretrained body ─> fine-tune on subset ─> test accuracy, macro-F1
            random weights  ─> fine-tune on subset ─> test accuracy, macro-F1   (same subset,
                                                                                same steps)
    ─> mean ± std over seeds per budget: a table, ``summary.json["curve"]``,
       ``learning_curve.png``

Labels are what is scarce in practice; pretraining's value shows where they are.  Both arms of
a point train on the same examples for the same number of iterations (each at its own
learning rate: ``--learning_rate`` for the pretrained body, ``--scratch_learning_rate`` for
random weights) and are evaluated on the whole validation and test splits.  A budget ``b`` trains for ``max(min_iters, b * max_iters)``
iterations (the warmup, the decay and the evaluation interval shrink with it), so a small
budget costs little and sees its few examples about as often as the full one does.

Each run is a normal fine-tuning run in its own directory, so an interrupted curve continues
with ``--resume``: finished points are read back, the unfinished one resumes exactly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import os

import numpy as np

from .. import checkpoint, data, files
from .loop import pyplot, save_plot

ARMS = ("pretrained", "scratch")


def parse_budgets(text: str) -> list[float]:
    """``"0.02,0.05,1"`` -> ``[0.02, 0.05, 1.0]``: fractions in (0, 1], increasing."""
    try:
        budgets = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--budgets must be comma-separated fractions of the training set "
                         f"such as 0.05,0.25,1, got {text!r}") from None
    if not budgets or any(not 0 < b <= 1 for b in budgets) or budgets != sorted(set(budgets)):
        raise ValueError(f"--budgets must be increasing fractions in (0, 1] such as "
                         f"0.05,0.25,1, got {text!r}")
    return budgets


def budget_config(cfg, fraction: float, seed: int, out_dir: str, arm: str = "pretrained"):
    """The fine-tuning flags of one run of the curve: ``seed``, and a schedule shrunk with the
    budget -- ``max(min_iters, fraction * max_iters)`` iterations, the warmup, the decay and the
    evaluation interval in proportion.  The scratch arm peaks at ``--scratch_learning_rate``
    (its floor scaled alike).  A run that saved a state continues; any other starts afresh
    (the top-level ``--overwrite`` has already removed old curves)."""
    iters = budget_iters(cfg, fraction)
    scale = iters / cfg.max_iters
    decay = max(1, round(cfg.lr_decay_iters * scale))
    started = bool(checkpoint.state_dirs(os.path.join(out_dir, "resume")))
    return dataclasses.replace(
        cfg, seed=seed, out_dir=out_dir, max_iters=iters, lr_decay_iters=decay,
        warmup_iters=min(round(cfg.warmup_iters * scale), decay),
        eval_interval=max(1, math.ceil(cfg.eval_interval * scale)),
        resume=started, overwrite=not started, compare_scratch=False,
        **(arm_rates(cfg) if arm == "scratch" else {}))


def budget_iters(cfg, fraction: float) -> int:
    """Fine-tuning iterations at a label budget: ``max(min_iters, fraction * max_iters)``,
    never more than ``max_iters`` (which the full budget gets)."""
    return min(cfg.max_iters, max(cfg.min_iters, math.ceil(fraction * cfg.max_iters)))


def arm_rates(cfg) -> dict:
    """The scratch arm's peak and floor learning rates.  Random weights are trained best at a
    gentler rate than a pretrained body is fine-tuned at: at 3e-3 some seeds of the scratch
    arm never leave the majority class (README, "Does pretraining pay?")."""
    return {"learning_rate": cfg.scratch_learning_rate,
            "min_lr": cfg.min_lr * cfg.scratch_learning_rate / cfg.learning_rate}


def examples_sha256(examples) -> str:
    """A fingerprint of a training subset (its texts and labels, in order): two runs with the
    same one trained on the same examples."""
    digest = hashlib.sha256()
    for text, label in examples:
        digest.update(f"{label}\t{len(text)}\t{text}".encode())
    return digest.hexdigest()


def run_dir(cfg, fraction: float, seed: int, arm: str) -> str:
    """Where one run of the curve lives.  The full budget at the first seed is the top-level
    run itself (``out_dir``, and ``out_dir/scratch``), whose summary keys keep their meaning."""
    if fraction == 1 and seed == cfg.seed:
        return cfg.out_dir if arm == "pretrained" else os.path.join(cfg.out_dir, "scratch")
    return os.path.join(cfg.out_dir, "curve", f"budget-{fraction:g}", f"seed-{seed}", arm)


def learning_curve(cfg, task, body_dir: str, finetune) -> tuple[list[dict], list[dict]]:
    """Fine-tune both arms at every budget and seed (``finetune`` is ``finetune_classifier``).
    Returns (the runs, one dict each; the curve, one dict per budget: see ``summarize``)."""
    budgets, seeds = parse_budgets(cfg.budgets), [cfg.seed + k for k in range(cfg.seeds)]
    labels = [label for _, label in task.train]
    subsets = {seed: dict(zip(budgets, data.label_budget_subsets(labels, budgets, seed)))
               for seed in seeds}
    total = sum(budget_iters(cfg, b) for b in budgets)
    print(f"\nlearning curve: {len(budgets)} label budgets x {len(seeds)} seeds x "
          f"{len(ARMS)} arms = {len(budgets) * len(seeds) * len(ARMS)} fine-tuning runs, "
          f"{total * len(seeds) * len(ARMS):,} iterations in all (each run's output is in "
          f"its directory under {cfg.out_dir})")
    runs, curve = [], []
    for fraction in budgets:
        for seed in seeds:
            subset = [task.train[i] for i in subsets[seed][fraction]]
            point = dataclasses.replace(task, train=subset)
            for arm in ARMS:
                out_dir = run_dir(cfg, fraction, seed, arm)
                run_cfg = budget_config(cfg, fraction, seed, out_dir, arm)
                with contextlib.redirect_stdout(io.StringIO()):     # one line per run instead
                    summary = finetune(run_cfg, point, body_dir=body_dir,
                                       scratch=arm == "scratch")
                runs.append({"fraction": fraction, "seed": seed, "arm": arm,
                             "n_train": len(subset), "iters": summary["iters"],
                             "train_sha256": summary["train_sha256"],
                             "test_accuracy": summary["test_accuracy"],
                             "test_f1_macro": summary["test_f1_macro"], "out_dir": out_dir})
                print(f"budget {fraction:>6.1%} ({len(subset):>4} examples, "
                      f"{summary['iters']:>3} iterations), seed {seed}, {arm:<10}: "
                      f"test accuracy {summary['test_accuracy']:.1%}, macro-F1 "
                      f"{summary['test_f1_macro']:.3f}", flush=True)
        curve.append(summarize([r for r in runs if r["fraction"] == fraction]))
    return runs, curve


def summarize(runs: list[dict]) -> dict:
    """One budget's runs -> its point of the curve: mean and (sample) std over seeds of each
    arm's test macro-F1 and accuracy (fractions in [0, 1]), and of the per-seed gain
    (pretrained minus scratch on the same subset: paired, so the subset's luck cancels)."""
    by_arm = {arm: sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
              for arm in ARMS}
    point = {"fraction": runs[0]["fraction"], "n_train": runs[0]["n_train"],
             "iters": runs[0]["iters"], "seeds": [r["seed"] for r in by_arm["pretrained"]]}
    for metric, name in (("test_f1_macro", "f1"), ("test_accuracy", "accuracy")):
        values = {arm: np.array([r[metric] for r in by_arm[arm]]) for arm in ARMS}
        for arm in ARMS:
            point[f"{arm}_{name}_mean"], point[f"{arm}_{name}_std"] = mean_std(values[arm])
        point[f"{name}_gain_mean"], point[f"{name}_gain_std"] = mean_std(
            values["pretrained"] - values["scratch"])
    return point


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def format_curve(curve: list[dict]) -> str:
    """The curve as a table: macro-F1 and accuracy, mean ± std over seeds, per budget."""
    head = (f"{'budget':>7} {'examples':>8} {'iters':>5} | {'macro-F1: pretrained':>20} "
            f"{'scratch':>13} {'gain':>13} | {'accuracy: pretrained':>20} {'scratch':>13}")
    lines = [head, "-" * len(head)]
    for p in curve:
        def pm(key):
            return f"{p[key + '_mean']:.3f} ± {p[key + '_std']:.3f}"
        lines.append(f"{p['fraction']:>7.0%} {p['n_train']:>8} {p['iters']:>5} | "
                     f"{pm('pretrained_f1'):>20} {pm('scratch_f1'):>13} {pm('f1_gain'):>13} | "
                     f"{pm('pretrained_accuracy'):>20} {pm('scratch_accuracy'):>13}")
    seeds = len(curve[0]["seeds"]) if curve else 0
    lines.append(f"(mean ± std over {seeds} seed(s); gain = pretrained - scratch on the same "
                 f"subset, per seed)")
    return "\n".join(lines)


def plot_learning_curve(curve: list[dict], png_path: str) -> bool:
    """Test macro-F1 (mean ± std over seeds) against the number of labelled examples, one
    line per arm, log-scaled x; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    n = [p["n_train"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, label in (("pretrained", "pretrained body"), ("scratch", "from scratch")):
        mean = np.array([p[f"{arm}_f1_mean"] for p in curve])
        std = np.array([p[f"{arm}_f1_std"] for p in curve])
        ax.plot(n, mean, marker="o", label=label)
        ax.fill_between(n, mean - std, mean + std, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(n, [f"{c}\n({p['fraction']:.0%})" for c, p in zip(n, curve)])
    ax.minorticks_off()
    ax.set_xlabel("labelled training examples (budget)")
    ax.set_ylabel("test macro-F1")
    ax.set_title(f"fine-tuning: mean ± std over {len(curve[0]['seeds'])} seed(s)")
    save_plot(plt, fig, ax, png_path)
    return True


def write_curve(cfg, summary: dict, runs: list[dict], curve: list[dict]) -> dict:
    """The curve into the top-level summary (``curve``, ``curve_runs``) and its picture."""
    summary.update({"curve": curve, "curve_runs": runs})
    files.write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
    print("\n" + format_curve(curve))
    if plot_learning_curve(curve, os.path.join(cfg.out_dir, "learning_curve.png")):
        print(f"saved {os.path.join(cfg.out_dir, 'learning_curve.png')}")
    return summary
