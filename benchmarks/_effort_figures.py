"""The budget-curve figure of the drawn-area benchmark (``effort.py table`` → curves.png)."""

import numpy as np

from _effort_plan import BUDGETS, SPLITS, TARGETS, mean_of_split_means, runs_of


def curve_band(records, arm, recipe, target):
    """Per budget with every split measured: ``(budget, mean, low, high, n_draws)``.

    ``mean`` is the mean of the split means (as in the tables); ``low``/``high`` the range of
    the means of the draws that ran on every split (``mean`` itself when there is none).
    """
    band = []
    for b in BUDGETS:
        by_split, by_draw = {}, {}
        for r in runs_of(records, arm=arm, budget=b, recipe=recipe, target=target, round=1):
            by_split.setdefault(r["split"], []).append(r["miou"])
            by_draw.setdefault(r["seed"], {})[r["split"]] = r["miou"]
        if len(by_split) < len(SPLITS):
            continue
        mean = mean_of_split_means(by_split)
        draws = [np.mean(list(v.values())) for v in by_draw.values() if len(v) == len(SPLITS)]
        band.append((b, mean, float(min(draws, default=mean)), float(max(draws, default=mean)),
                     len(draws)))  # fmt: skip
    return band


def curve_figure(out, records, recipe, arms):
    """mIoU against drawn area per target: mean of the split means, and as a band the range
    of the draws' means (each draw's mean over the five splits; only draws on every split).

    The band shows draws, not splits: on EM a draw picks neighbouring slices in every split,
    so the splits of one draw move together and their range hides how much the draw
    decides. A budget with fewer than five complete draws is labelled with its count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TARGETS), figsize=(10, 4))
    for ax, t in zip(axes, TARGETS):
        for arm in arms:
            band = curve_band(records, arm, recipe, t)
            xs, mean, low, high, n_draws = zip(*band) if band else ((),) * 5
            if xs:
                (line,) = ax.plot(xs, mean, marker="o", label=arm)
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
                for x, y, n in zip(xs, mean, n_draws):
                    if n < 5:
                        ax.annotate(
                            f"{n} draw{'s' * (n != 1)}",
                            (x, y),
                            textcoords="offset points",
                            xytext=(4, -10),
                            fontsize=7,
                            color=line.get_color(),
                        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
        ax.set_xlabel("drawn area (image-equivalents)")
        ax.set_ylabel("mIoU (%): mean of splits 0-4, range of draws")
        ax.set_title(t)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
