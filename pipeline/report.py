"""report.json / report.md from the split statistics and the per-slice metrics (pure functions)."""
from typing import Any, Dict, List

import numpy as np

from trainer import aqcl, metrics
from trainer.protocol import PHASES
from trainer.protocols.leave_last_out import GROUPS

SPLIT_KEYS = ("base", "warm_a", "warm_b", "warm_c", "test", "dropped")
ALPHA_X = np.linspace(0.0, 4.0, 81)  # L_j / mean L at which report.json samples AQCL's alpha
INGEST_COUNTS = (("duplicate_files", "input files matched twice (read once)"),
                 ("duplicate_rows", "exact duplicate log rows"),
                 ("dropped_duplicates", "of them dropped (dedupe)"),
                 ("identical_side_rows", "side-table rows repeating a key with the same values"))


def slice_order(per_seed: Dict[str, Dict[str, Dict[str, float]]]) -> List[str]:
    """The slices of {seed: {slice: metrics}}, in the order the first seed lists them."""
    order: List[str] = []
    for run in per_seed.values():
        order += [name for name in run if name not in order]
    return order


def aggregate(per_seed: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """{seed: {slice: {auc, f1[, rows]}}} -> {slice: {auc, auc_std, f1[, rows]}}; std is the
    population std. AUC is None where every seed's is (a slice of one class)."""
    out = {}
    for name in slice_order(per_seed):
        runs = [run[name] for run in per_seed.values() if name in run]
        aucs = np.array([r["auc"] for r in runs if r["auc"] is not None])
        f1s = np.array([r["f1"] for r in runs])
        out[name] = {"auc": float(aucs.mean()) if len(aucs) else None,
                     "auc_std": float(aucs.std()) if len(aucs) else None, "f1": float(f1s.mean())}
        if "rows" in runs[0]:
            out[name]["rows"] = runs[0]["rows"]
    return out


def build_report(dataset: str, split_stats: Dict[str, Any], phase_metrics: Dict[str, Any],
                 config: Dict[str, Any]) -> Dict[str, Any]:
    """`methods` ({method: {slice: {auc, auc_std, f1, rela_impr}}}) aggregates the seeds that
    finished; `failed` lists the (method, seed) cells that stopped on a non-finite loss, with
    their message (a method with none finished is left out of `methods`). `protocol` names the
    evaluation protocol, its parameters and the slices (item phases: cold .. warm_c; else
    `overall` and the groups or domains); the item-frequency report keeps N, K and its splits."""
    protocol = phase_metrics["protocol"]
    methods = {name: aggregate(per_seed) for name, per_seed in phase_metrics["methods"].items()
               if per_seed}
    if "base" in methods:
        for name, slices in methods.items():
            for key, values in slices.items():
                reference = methods["base"].get(key, {}).get("auc")
                if values["auc"] is not None and reference is not None:
                    values["rela_impr"] = metrics.rela_impr(values["auc"], reference)
    slices: List[str] = list(phase_metrics.get("slices", []))
    for per_seed in phase_metrics["methods"].values():
        slices += [name for name in slice_order(per_seed) if name not in slices]
    report = {"dataset": dataset, "backbone": phase_metrics["backbone"]}
    if protocol["name"] == "item_frequency":
        report.update({"N": split_stats["N"], "K": split_stats["K"]})
        splits = {key: split_stats[key] for key in (*SPLIT_KEYS, "old_items", "new_items",
                                                    "dropped_items")}
    else:
        splits = {key: value for key, value in split_stats.items()
                  if key not in protocol["params"]}  # rows per split, group or domain sizes
    report.update({
        "protocol": {"name": protocol["name"], "params": protocol["params"], "slices": slices},
        "runs": len(phase_metrics["seeds"]), "seeds": list(phase_metrics["seeds"]),
        "splits": splits,
        "methods": methods,
        "per_seed": phase_metrics["methods"],
        "failed": list(phase_metrics.get("failed", [])),
        "config": config,
    })
    if phase_metrics.get("early_stopping"):  # per seed: validation AUC per epoch, epoch kept
        report["early_stopping"] = phase_metrics["early_stopping"]
    if phase_metrics.get("diagnostics"):  # the methods' report_diagnostics, per label and seed
        report["diagnostics"] = phase_metrics["diagnostics"]
        curves = alpha_curves(phase_metrics["diagnostics"], split_stats)
        if curves:
            report["alpha_curve"] = curves
    return report


def alpha_curves(diagnostics: Dict[str, Any], split_stats: Dict[str, Any]) -> Dict[str, Any]:
    """report.json's `alpha_curve`, per label whose seeds carry one (aqcl): `seeds` {seed: {w1,
    w2, mean_L}}, `alpha` {seed: R at `x`}, R(x) = exp(-w1 x^w2) at x = L_j / mean L in [0, 4]
    (trainer/aqcl.alpha), and the user-group edges on L (leave_last_out's cut values)."""
    edges = []
    if "cut_low_value" in split_stats:
        edges = [{"L": split_stats["cut_low_value"], "between": list(GROUPS[:2])},
                 {"L": split_stats["cut_high_value"], "between": list(GROUPS[1:])}]
    out = {}
    for label, per_seed in diagnostics.items():
        seeds = {seed: found["alpha_curve"] for seed, found in per_seed.items()
                 if "alpha_curve" in found}
        if seeds:
            out[label] = {"seeds": seeds, "x": ALPHA_X.tolist(), "group_edges": edges,
                          "alpha": {seed: _alpha(ALPHA_X, p).tolist() for seed, p in seeds.items()}}
    return out


def _alpha(x, parameters) -> np.ndarray:
    return aqcl.alpha(x, 1.0, parameters["w1"], parameters["w2"]).numpy().astype(np.float64)


def plot_name(kind: str, label: str) -> str:
    """The file of a per-label plot (`alpha`, `tuning`) beside report.json."""
    return f"{kind}_{label.replace('/', '_')}.png"


def render_alpha_curves(curves: Dict[str, Dict[str, Any]]) -> List[str]:
    """The markdown lines of report.json's `alpha_curve` section."""
    lines = ["", "## AQCL alpha curve: alpha = exp(-w1 (L_j / mean L)^w2)"]
    for label, entry in curves.items():
        same = {}  # seeds with the same parameters, on one line
        for seed, p in entry["seeds"].items():
            same.setdefault((p["w1"], p["w2"], p["mean_L"]), []).append(seed)
        seeds = "; ".join(f"{_seeds(which)}: w1 {w1:g}, w2 {w2:g}, mean L {mean:.3f}"
                          for (w1, w2, mean), which in same.items())
        edges = "; ".join(f"L = {e['L']} ({' | '.join(e['between'])})"
                          for e in entry["group_edges"])
        lines += ["", f"{label}: `{plot_name('alpha', label)}`; {seeds}."
                  + (f" Group edges (the protocol's cut values on the user's train clicks; a "
                     f"sample's L_j counts all its earlier clicks): {edges}." if edges else "")]
    return lines


def _seeds(seeds: List[str]) -> str:
    return ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(seeds)


def plot_alpha_curve(label: str, entry: Dict[str, Any], path: str) -> None:
    """alpha against L_j / mean L: one line per distinct (w1, w2) over the seeds, the user-group
    edges as vertical lines at edge / mean L (one per distinct mean L)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    seeds = entry["seeds"]
    means = sorted({p["mean_L"] for p in seeds.values()})
    right = max([4.0] + [1.05 * e["L"] / m for e in entry["group_edges"] for m in means])
    x = np.linspace(0.0, right, 201)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for w in sorted({(p["w1"], p["w2"]) for p in seeds.values()}):
        which = [s for s, p in seeds.items() if (p["w1"], p["w2"]) == w]
        ax.plot(x, _alpha(x, dict(w1=w[0], w2=w[1])),
                label=f"w1 {w[0]:g}, w2 {w[1]:g} ({_seeds(which)})")
    for index, edge in enumerate(entry["group_edges"]):
        for mean in means:
            at = edge["L"] / mean
            ax.axvline(at, color=f"C{index + 1}", linestyle="--", linewidth=1)
            ax.text(at, 0.98, f" L={edge['L']}: {' | '.join(edge['between'])}"
                    + (f" (mean L {mean:.2f})" if len(means) > 1 else ""),
                    rotation=90, va="top", fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xlim(0.0, right)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(f"L_j / mean L (mean L {', '.join(f'{m:.2f}' for m in means)})")
    ax.set_ylabel("alpha = R(L_j)")
    ax.set_title(f"{label}: alpha = R(L_j) with the run's w1, w2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_slices(report: Dict[str, Any]) -> List[str]:
    """The report's columns (reports written before protocols existed: the item phases)."""
    return report.get("protocol", {}).get("slices") or list(PHASES)


def method_label(name: str) -> str:
    """The method's name, with the model it evaluates when it is not the run's backbone."""
    from trainer.methods import method_class  # pylint: disable=import-outside-toplevel
    own = method_class(name).own_backbone
    return f"{name} (own backbone: {own})" if own else name


def render_markdown(report: Dict[str, Any]) -> str:
    s = report["splits"]
    slices = report_slices(report)
    protocol_name = report.get("protocol", {}).get("name", "item_frequency")
    if protocol_name == "item_frequency":
        lines = [
            f"# {report['dataset']} / {report['backbone']}: AUC per phase",
            "",
            f"N={report['N']}, K={report['K']}, {report['runs']} run(s), seeds {report['seeds']}. "
            f"Splits (rows): base {s['base']:,}, warm_a {s['warm_a']:,}, warm_b {s['warm_b']:,}, "
            f"warm_c {s['warm_c']:,}, test {s['test']:,}, dropped {s['dropped']:,}; "
            f"{s['old_items']:,} old items, {s['new_items']:,} new items."]
    else:
        params = ", ".join(f"{k}={v}" for k, v in sorted(report["protocol"]["params"].items()))
        lines = [
            f"# {report['dataset']} / {report['backbone']}: AUC per slice ({protocol_name})",
            "",
            f"Protocol {protocol_name} ({params}); {report['runs']} run(s), seeds {report['seeds']}. "
            "Split statistics: " + ", ".join(
                f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in s.items()) + "."]
    lines += ["", "| method | " + " | ".join(slices) + " |", "|---|" + "---|" * len(slices)]
    failed = report.get("failed", [])
    marked = {cell["method"] for cell in failed}
    for name, phases in report["methods"].items():
        cells = []
        for phase in slices:
            v = phases.get(phase, {"auc": None})
            if v["auc"] is None:
                cells.append("n/a (one class)" if phase in phases else "-")
                continue
            cell = f"{v['auc']:.4f} ± {v['auc_std']:.4f}"
            if name != "base" and "rela_impr" in v:
                cell += f" ({v['rela_impr']:+.2f}%)"
            cells.append(cell)
        lines.append(f"| {_label(name, marked)} | " + " | ".join(cells) + " |")
    for name in sorted(marked - set(report["methods"])):
        lines.append(f"| {_label(name, marked)} | " + " | ".join(["failed"] * len(slices)) + " |")
    lines += ["", "AUC: mean ± population std over runs; F1 (threshold = mean score):", "",
              "| method | " + " | ".join(slices) + " |", "|---|" + "---|" * len(slices)]
    for name, phases in report["methods"].items():
        lines.append(f"| {_label(name, marked)} | "
                     + " | ".join(f"{phases[p]['f1']:.4f}" if p in phases else "-"
                                  for p in slices) + " |")
    sizes = next((v for v in report["methods"].values()), {})
    if any("rows" in sizes.get(p, {}) for p in slices) and protocol_name != "item_frequency":
        lines += ["", "Rows evaluated per slice: "
                  + ", ".join(f"{p} {sizes[p]['rows']:,}" for p in slices if p in sizes) + "."]
    if failed:
        lines += ["", "**FAILED** (†: the method's figures above are over its other seeds only):"]
        lines += [f"- {cell['method']} seed {cell['seed']}: {cell['message']}" for cell in failed]
    if "quarantined" in report:
        q = report["quarantined"]
        reasons = ", ".join(f"{k} {v:,}" for k, v in q["by_reason"].items()) or "none"
        rule = report.get("config", {}).get("dataset", {}).get("negative_sampling", "")
        rule = f", rule `{rule}`" if report["ingest"]["negatives"] and rule else ""
        lines += ["", f"Input: {report['ingest']['rows']:,} rows, {report['ingest']['examples']:,} "
                      f"examples ({report['ingest']['negatives']:,} sampled negatives{rule}); "
                      f"{q['rows']:,} rows quarantined ({reasons}): `{q['path']}`."]
        counted = [f"{report['ingest'][k]:,} {what}" for k, what in INGEST_COUNTS
                   if report["ingest"].get(k)]
        counted += [f"{n:,} examples without a match in {join}"
                    for join, n in report["ingest"].get("unmatched", {}).items()]
        if counted:
            lines[-1] += " Counted: " + "; ".join(counted) + "."
    if "tfma" in report:
        lines += ["", f"TFMA Evaluator (seeds {', '.join(report['tfma']['seeds'])}): largest "
                      f"|AUC_TFMA - AUC| over method x seed x slice = "
                      f"{report['tfma']['max_abs_auc_diff']:.1e}."]
    if "tuning" in report:
        lines += render_tuning(report["tuning"])
    if "alpha_curve" in report:
        lines += render_alpha_curves(report["alpha_curve"])
    if "wall_seconds" in report:
        lines += ["", f"Wall time: {report['wall_seconds']:.1f} s."]
    return "\n".join(lines) + "\n"


def tuning_section(phase_metrics: Dict[str, Any], searches: List[Dict[str, Any]],
                   config: Dict[str, Any]) -> Dict[str, Any]:
    """report.json's `tuning`: per tuned label, the options `<label>/tuned` was evaluated with
    (`options`: --set options overlaid with `best_options`) and, when searched, the search
    (`tuner`, `trials`: id, options, objective, status, wall time; `best`, `wall_s`), else the
    file the options were imported from (`imported`). `searches`: the Tuners' trials.json."""
    by_label = {search["method"]: search for search in searches}
    out = {}
    for label, best in phase_metrics["tuned"].items():
        entry = {"label": label + "/tuned", "best_options": best,
                 "options": phase_metrics["method_options"][label + "/tuned"]}
        search = by_label.get(label)
        if search is None:
            entry["imported"] = config.get("hyperparameters")
        else:
            entry.update(tuner=config.get("tuner"), best=search["best"],
                         wall_s=None if search["wall_s"] is None else round(search["wall_s"], 1),
                         **({"remote": True} if search.get("remote") else {}),
                         trials=[{key: trial[key] for key in ("trial_id", "options", "objective",
                                                              "status", "wall_s", "defaults",
                                                              "message")}
                                 for trial in search["trials"]])
        out[label] = entry
    return out


def render_tuning(tuning: Dict[str, Dict[str, Any]]) -> List[str]:
    """The markdown lines of report.json's `tuning` section."""
    lines = ["", "## Tuning (on the protocol's tuning view, never its test split)"]
    for label, entry in tuning.items():
        if "trials" not in entry:
            lines += ["", f"{entry['label']}: options imported from `{entry['imported']}`: "
                          f"{entry['options']}."]
            continue
        done = sum(t["status"] == "completed" for t in entry["trials"])
        lines += ["", f"### {label} ({entry['tuner']} search, {len(entry['trials'])} trials, "
                      f"{done} completed, {_seconds(entry['wall_s'])} s)", ""]
        if entry.get("remote"):
            lines += ["Vertex AI parallel trials: completed trials only (TFX's "
                      "tuner_results.json), no wall times.", ""]
        lines += ["| trial | options | objective | status | wall s |", "|---|---|---|---|---|"]
        for trial in entry["trials"]:
            objective = "-" if trial["objective"] is None else f"{trial['objective']:.4f}"
            status = trial["status"] + (" (defaults)" if trial["defaults"] else "")
            if trial["message"]:
                status += f": {trial['message']}"
            lines.append(f"| {trial['trial_id']} | {trial['options']} | {objective} | {status} | "
                         f"{_seconds(trial['wall_s'])} |")
        best = entry["best"]
        lines += ["", (f"Best: trial {best['trial_id']}, objective {best['objective']:.4f}; "
                       if best else "No trial completed; ")
                  + f"{entry['label']} evaluated with {entry['options']}."]
    return lines


def _seconds(value) -> str:
    """A wall time in s, or "-" where none was measured (Vertex AI's parallel trials)."""
    return "-" if value is None else f"{value:.1f}"


def plot_tuning(label: str, entry: Dict[str, Any], path: str) -> None:
    """The objective of each trial of `label`'s search (failed trials: a cross on the axis)
    and the best so far."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    values = [_or_nan(t["objective"]) for t in entry["trials"]]
    x = np.arange(len(values))
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(x, values, "o", label="trial")
    ax.step(x, np.fmax.accumulate(values), where="post", label="best so far")
    failed = [i for i, v in enumerate(values) if np.isnan(v)]
    if failed:
        low = np.nanmin(values) if not np.all(np.isnan(values)) else 0.5
        ax.plot(failed, [low] * len(failed), "x", color="red", label="failed")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (tuning view)")
    ax.set_title(f"{label}: {entry['tuner']} search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _label(name: str, marked) -> str:
    return f"{method_label(name)} †" if name in marked else method_label(name)


def failed_cells(reports: Dict[str, Dict[str, Any]]) -> str:
    """One line naming every failed (backbone, method, seed) cell; empty when none failed."""
    return "; ".join(f"{backbone} {cell['method']} seed {cell['seed']}"
                     for backbone, report in reports.items() for cell in report.get("failed", []))


def plot_auc_by_phase(reports: Dict[str, Dict[str, Any]], path: str) -> None:
    """One panel per backbone: one line per method across the phases (item phases), or bars per
    method and slice (groups, domains); error bars: std over the seeds."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, axes = plt.subplots(1, len(reports), figsize=(4.5 * len(reports), 3.6), squeeze=False)
    for ax, (backbone, report) in zip(axes[0], reports.items()):
        slices = report_slices(report)
        phases_as_lines = report.get("protocol", {}).get("name", "item_frequency") == "item_frequency"
        width = 0.8 / max(len(report["methods"]), 1)
        for index, (name, values) in enumerate(report["methods"].items()):
            auc = [_or_nan(values.get(p, {}).get("auc")) for p in slices]
            std = [_or_nan(values.get(p, {}).get("auc_std")) for p in slices]
            if phases_as_lines:
                ax.errorbar(range(len(slices)), auc, yerr=std, marker="o", capsize=3, label=name)
            else:  # groups or domains: bars per slice
                ax.bar(np.arange(len(slices)) + (index - (len(report["methods"]) - 1) / 2) * width,
                       auc, width, yerr=std, capsize=2, label=name)
        ax.set_xticks(range(len(slices)), [p.replace("_", "-") for p in slices],
                      rotation=0 if phases_as_lines else 20)
        if not phases_as_lines:
            low = np.nanmin([_or_nan(v.get(p, {}).get("auc")) for v in report["methods"].values()
                             for p in slices] or [0.5])
            ax.set_ylim(max(0.0, low - 0.05), None)
        ax.set_title(f"{report['dataset']} / {backbone} ({report['runs']} runs)")
        ax.set_ylabel("test AUC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _or_nan(value) -> float:
    return np.nan if value is None else value


def render_combined(reports: Dict[str, Dict[str, Any]]) -> str:
    """Markdown with one table per backbone (for runs over several backbones)."""
    return "\n".join(render_markdown(report) for report in reports.values())
