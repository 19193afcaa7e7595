"""report.json / report.md from the split statistics and the per-phase metrics (pure functions)."""
from typing import Any, Dict

import numpy as np

from trainer import metrics
from trainer.protocol import PHASES

SPLIT_KEYS = ("base", "warm_a", "warm_b", "warm_c", "test", "dropped")
INGEST_COUNTS = (("duplicate_files", "input files matched twice (read once)"),
                 ("duplicate_rows", "exact duplicate log rows"),
                 ("dropped_duplicates", "of them dropped (dedupe)"),
                 ("identical_side_rows", "side-table rows repeating a key with the same values"))


def aggregate(per_seed: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """{seed: {phase: {auc, f1}}} -> {phase: {auc, auc_std, f1}}; std is the population std."""
    out = {}
    for phase in PHASES:
        aucs = np.array([run[phase]["auc"] for run in per_seed.values()])
        f1s = np.array([run[phase]["f1"] for run in per_seed.values()])
        out[phase] = {"auc": float(aucs.mean()), "auc_std": float(aucs.std()),
                      "f1": float(f1s.mean())}
    return out


def build_report(dataset: str, N: int, K: int, split_stats: Dict[str, int],
                 phase_metrics: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Any]:
    """`methods` aggregates the seeds that finished; `failed` lists the (method, seed) cells that
    stopped on a non-finite loss, with their message (a method with none finished is left out of
    `methods`)."""
    methods = {name: aggregate(per_seed) for name, per_seed in phase_metrics["methods"].items()
               if per_seed}
    if "base" in methods:
        for name, phases in methods.items():
            for phase, values in phases.items():
                values["rela_impr"] = metrics.rela_impr(values["auc"], methods["base"][phase]["auc"])
    return {
        "dataset": dataset, "backbone": phase_metrics["backbone"], "N": N, "K": K,
        "runs": len(phase_metrics["seeds"]), "seeds": list(phase_metrics["seeds"]),
        "splits": {**{key: split_stats[key] for key in SPLIT_KEYS},
                   **{key: split_stats[key] for key in ("old_items", "new_items", "dropped_items")}},
        "methods": methods,
        "per_seed": phase_metrics["methods"],
        "failed": list(phase_metrics.get("failed", [])),
        "config": config,
    }


def method_label(name: str) -> str:
    """The method's name, with the model it evaluates when it is not the run's backbone."""
    from trainer.methods import method_class  # pylint: disable=import-outside-toplevel
    own = method_class(name).own_backbone
    return f"{name} (own backbone: {own})" if own else name


def render_markdown(report: Dict[str, Any]) -> str:
    s = report["splits"]
    lines = [
        f"# {report['dataset']} / {report['backbone']}: AUC per phase",
        "",
        f"N={report['N']}, K={report['K']}, {report['runs']} run(s), seeds {report['seeds']}. "
        f"Splits (rows): base {s['base']:,}, warm_a {s['warm_a']:,}, warm_b {s['warm_b']:,}, "
        f"warm_c {s['warm_c']:,}, test {s['test']:,}, dropped {s['dropped']:,}; "
        f"{s['old_items']:,} old items, {s['new_items']:,} new items.",
        "",
        "| method | " + " | ".join(PHASES) + " |",
        "|---|" + "---|" * len(PHASES),
    ]
    failed = report.get("failed", [])
    marked = {cell["method"] for cell in failed}
    for name, phases in report["methods"].items():
        cells = []
        for phase in PHASES:
            v = phases[phase]
            cell = f"{v['auc']:.4f} ± {v['auc_std']:.4f}"
            if name != "base" and "rela_impr" in v:
                cell += f" ({v['rela_impr']:+.2f}%)"
            cells.append(cell)
        lines.append(f"| {_label(name, marked)} | " + " | ".join(cells) + " |")
    for name in sorted(marked - set(report["methods"])):
        lines.append(f"| {_label(name, marked)} | " + " | ".join(["failed"] * len(PHASES)) + " |")
    lines += ["", "AUC: mean ± population std over runs; F1 (threshold = mean score):", "",
              "| method | " + " | ".join(PHASES) + " |", "|---|" + "---|" * len(PHASES)]
    for name, phases in report["methods"].items():
        lines.append(f"| {_label(name, marked)} | "
                     + " | ".join(f"{phases[p]['f1']:.4f}" for p in PHASES) + " |")
    if failed:
        lines += ["", "**FAILED** (†: the method's figures above are over its other seeds only):"]
        lines += [f"- {cell['method']} seed {cell['seed']}: {cell['message']}" for cell in failed]
    if "quarantined" in report:
        q = report["quarantined"]
        reasons = ", ".join(f"{k} {v:,}" for k, v in q["by_reason"].items()) or "none"
        lines += ["", f"Input: {report['ingest']['rows']:,} rows, {report['ingest']['examples']:,} "
                      f"examples ({report['ingest']['negatives']:,} sampled negatives); "
                      f"{q['rows']:,} rows quarantined ({reasons}): `{q['path']}`."]
        counted = [f"{report['ingest'][k]:,} {what}" for k, what in INGEST_COUNTS
                   if report["ingest"].get(k)]
        counted += [f"{n:,} examples without a match in {join}"
                    for join, n in report["ingest"].get("unmatched", {}).items()]
        if counted:
            lines[-1] += " Counted: " + "; ".join(counted) + "."
    if "tfma" in report:
        lines += ["", f"TFMA Evaluator (seeds {', '.join(report['tfma']['seeds'])}): largest "
                      f"|AUC_TFMA - AUC| over method x seed x phase = "
                      f"{report['tfma']['max_abs_auc_diff']:.1e}."]
    if "wall_seconds" in report:
        lines += ["", f"Wall time: {report['wall_seconds']:.1f} s."]
    return "\n".join(lines) + "\n"


def _label(name: str, marked) -> str:
    return f"{method_label(name)} †" if name in marked else method_label(name)


def failed_cells(reports: Dict[str, Dict[str, Any]]) -> str:
    """One line naming every failed (backbone, method, seed) cell; empty when none failed."""
    return "; ".join(f"{backbone} {cell['method']} seed {cell['seed']}"
                     for backbone, report in reports.items() for cell in report.get("failed", []))


def plot_auc_by_phase(reports: Dict[str, Dict[str, Any]], path: str) -> None:
    """One panel per backbone, one line per method across cold -> warm_c (error bars: std)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, axes = plt.subplots(1, len(reports), figsize=(4.5 * len(reports), 3.6), squeeze=False)
    for ax, (backbone, report) in zip(axes[0], reports.items()):
        for name, phases in report["methods"].items():
            ax.errorbar(range(len(PHASES)), [phases[p]["auc"] for p in PHASES],
                        yerr=[phases[p]["auc_std"] for p in PHASES], marker="o", capsize=3,
                        label=name)
        ax.set_xticks(range(len(PHASES)), [p.replace("_", "-") for p in PHASES])
        ax.set_title(f"{report['dataset']} / {backbone} ({report['runs']} runs)")
        ax.set_ylabel("test AUC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render_combined(reports: Dict[str, Dict[str, Any]]) -> str:
    """Markdown with one table per backbone (for runs over several backbones)."""
    return "\n".join(render_markdown(report) for report in reports.values())
