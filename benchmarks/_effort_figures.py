"""The budget-curve figure of the drawn-area benchmark (``effort.py table`` → curves.png)."""

import numpy as np

from _effort_plan import BUDGETS, SPLITS, TARGETS, runs_of


def curve_figure(out, records, recipe, arms):
    """mIoU against drawn area per target: mean of the split means, and the range of the
    split means as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TARGETS), figsize=(10, 4))
    for ax, t in zip(axes, TARGETS):
        for arm in arms:
            xs, mean, low, high = [], [], [], []
            for b in BUDGETS:
                by_split = {}
                for r in runs_of(records, arm=arm, budget=b, recipe=recipe, target=t, round=1):
                    by_split.setdefault(r["split"], []).append(r["miou"])
                if len(by_split) == len(SPLITS):
                    split_means = [np.mean(v) for v in by_split.values()]
                    xs.append(b)
                    mean.append(np.mean(split_means))
                    low.append(min(split_means))
                    high.append(max(split_means))
            if xs:
                (line,) = ax.plot(xs, mean, marker="o", label=arm)
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
        ax.set_xlabel("drawn area (image-equivalents)")
        ax.set_ylabel("mIoU (%): mean and range of splits 0-4")
        ax.set_title(t)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
