"""Two models over the same seeds, paired: the difference of each headline metric with its spread.

    python -m experiments.mnist.paired_seeds \
        --model "ANT 1x1=runs/a_s0/eval,runs/a_s1/eval" --model "GNT=runs/g_s0/eval,runs/g_s1/eval"

Each ``--model LABEL=DIR,DIR,...`` names one ``antray eval --out`` directory per seed (each
holds ``results.json``); the two lists pair by position, so give the seeds in the same order.
For the corruption mean, clean accuracy and each eps* the result files hold, it prints each
seed's pair and difference (first model minus second), then the mean difference, its
standard deviation, a 95 % confidence interval from the paired t distribution, how many
seeds the first model wins, and the exact two-sided sign-flip p-value (every one of the
2^n assignments of signs to the n differences; no normality assumed). Seeds are the unit:
with four seeds, a mean difference of half a point inside a one-point seed spread is noise,
and this says so in numbers. Reads only the result files it is given.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from collections.abc import Callable

from scipy import stats

from experiments.mnist.per_corruption_seeds import load_result, parse_model

# (label, unit, reader of one results.json); a reader returns None where the file lacks it.
Reader = Callable[[dict], float | None]


def _eps_star(kind: str) -> Reader:
    def read(result: dict) -> float | None:
        entry = (result.get("eps_star") or {}).get(kind)
        if not entry:
            return None
        # adversarial: the mean of its seeds' medians; gaussian / uniform: the median
        return float(entry["mean"] if "mean" in entry else entry["median"])

    return read


METRICS: list[tuple[str, str, Reader]] = [
    ("corruption mean (top-1)", "%", lambda r: 100 * float(r["mean_accuracy"])),
    ("clean (top-1)", "%", lambda r: 100 * float(r["clean_accuracy"])),
    ("eps* adversarial", "l2", _eps_star("adversarial")),
    ("eps* Gaussian", "l2", _eps_star("gaussian")),
    ("eps* uniform", "l2", _eps_star("uniform")),
]


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided p-value of the paired sign-flip (permutation) test of mean 0."""
    observed = abs(sum(diffs))
    count = 0
    for signs in itertools.product((1, -1), repeat=len(diffs)):
        if abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12:
            count += 1
    return count / 2 ** len(diffs)


def paired_summary(diffs: list[float]) -> dict[str, float]:
    """Mean, standard deviation, 95 % paired-t interval, wins and sign-flip p of ``diffs``."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if n > 1 else math.nan
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "low": mean - half,
        "high": mean + half,
        "wins": sum(d > 0 for d in diffs),
        "p": sign_flip_p(diffs),
    }


def report(label_a: str, runs_a: list[dict], label_b: str, runs_b: list[dict]) -> str:
    if len(runs_a) != len(runs_b) or len(runs_a) < 2:
        raise ValueError(
            f"paired seeds need the same number of runs (>= 2) per model, got "
            f"{len(runs_a)} for {label_a} and {len(runs_b)} for {label_b}"
        )
    lines = [
        f"| metric | {label_a} (seeds) | {label_b} (seeds) | difference per seed | "
        f"mean difference | sd | 95 % CI (paired t) | {label_a} wins | sign-flip p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, unit, read in METRICS:
        a = [read(r) for r in runs_a]
        b = [read(r) for r in runs_b]
        if any(v is None for v in a + b):
            continue  # a metric not every result file measured is left out, not half-reported
        diffs = [x - y for x, y in zip(a, b, strict=True)]
        s = paired_summary(diffs)
        lines.append(
            f"| {name} ({unit}) | {' / '.join(f'{v:.2f}' for v in a)} | "
            f"{' / '.join(f'{v:.2f}' for v in b)} | {' / '.join(f'{d:+.2f}' for d in diffs)} | "
            f"**{s['mean']:+.2f}** | {s['sd']:.2f} | [{s['low']:+.2f}, {s['high']:+.2f}] | "
            f"{s['wins']} of {s['n']} | {s['p']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", required=True, help="LABEL=DIR[,DIR...], exactly twice"
    )
    args = parser.parse_args(argv)
    try:
        if len(args.model) != 2:
            raise ValueError(f"--model is given exactly twice (A, then B), got {len(args.model)}")
        (label_a, dirs_a), (label_b, dirs_b) = (parse_model(spec) for spec in args.model)
        runs_a = [load_result(d) for d in dirs_a]
        runs_b = [load_result(d) for d in dirs_b]
        print(report(label_a, runs_a, label_b, runs_b))
    except (ValueError, FileNotFoundError, KeyError) as exc:  # JSONDecodeError is a ValueError
        print(f"paired_seeds: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
