"""Ingestion cost at scale (not a test): ExampleGen + item split + Transform on synthetic logs.

    .venv/bin/python benchmarks/ingest.py --rows 1000000 5000000 20000000 [--preset direct-mp]

For each size it writes a long-tailed click log (item popularity ~ Zipf(1.1), 1 item per 40
rows, 1 user per 100 rows, a category and a price per item, CTR ~ 4 %) as CSV shards with a YAML
config, runs the three components as a TFX pipeline (LocalDagRunner) in a child process, and
prints rows/s per component and overall, and the peak resident memory of the whole process
tree (sampled every 0.5 s with psutil).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIG = """name: synthetic
log: {files: ["clicks-*.csv"], format: csv}
fields:
  - {name: user_id, column: user, role: user}
  - {name: item_id, column: item, role: item}
  - {name: category, role: item}
  - {name: price, type: numeric, role: item}
  - {name: hour, role: context}
  - {name: timestamp, column: time, type: timestamp}
label: {column: click, positive: ["1"], negative: ["0"]}
split: {N: 200, K: 20}
"""
COMPONENTS = ("ClickLogExampleGen", "ItemSplitGen", "Transform")


def run_child(args, log_path: str, interval: float):
    """Runs this interpreter on `args` (stderr to `log_path`) and returns (exit code, wall
    seconds, peak RSS in bytes of its whole process tree, sampled every `interval` s, and the
    samples as (epoch seconds, bytes))."""
    import psutil  # pylint: disable=import-outside-toplevel
    with open(log_path, "w") as log:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=log)
        peak = [0]
        samples = []

        def sample():
            proc = psutil.Process(child.pid)
            while child.poll() is None:
                try:
                    tree = [proc] + proc.children(recursive=True)
                    rss = sum(p.memory_info().rss for p in tree if p.is_running())
                    peak[0] = max(peak[0], rss)
                    samples.append((time.time(), rss))
                except psutil.Error:
                    pass
                time.sleep(interval)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        code = child.wait()
        wall = time.perf_counter() - start
        thread.join()
    return code, wall, peak[0], samples


def write_log(folder: str, rows: int, shards: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    items, users = max(rows // 40, 100), max(rows // 100, 100)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.1
    popularity /= popularity.sum()
    category = rng.integers(0, 500, items)
    price = np.round(rng.lognormal(3, 1, items), 2)
    per_shard = -(-rows // shards)
    for shard in range(shards):
        n = min(per_shard, rows - shard * per_shard)
        item = rng.choice(items, size=n, p=popularity)
        user = rng.integers(0, users, n)
        time_ = rng.integers(1_500_000_000, 1_510_000_000, n)
        click = (rng.random(n) < 0.02 + 0.04 * (category[item] % 2)).astype(int)
        with open(os.path.join(folder, f"clicks-{shard:03d}.csv"), "w") as f:
            f.write("user,item,category,price,hour,time,click\n")
            for u, i, t, c in zip(user, item, time_, click):
                f.write(f"u{u},i{i},c{category[i]},{price[i]},{(t // 3600) % 24},{t},{c}\n")
    with open(os.path.join(folder, "synthetic.yaml"), "w") as f:
        f.write(CONFIG)


def _pipeline(folder: str, out: str, beam_args) -> None:
    """Runs in the child process: ClickLogExampleGen -> ItemSplitGen -> Transform."""
    import json  # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel

    from components import example_gen, log_config  # pylint: disable=import-outside-toplevel
    from components.split_component import ItemSplitGen  # pylint: disable=import-outside-toplevel
    from pipeline import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    import schemas  # pylint: disable=import-outside-toplevel

    config = log_config.load(os.path.join(folder, "synthetic.yaml"))
    schema_file = os.path.join(out, "schema.pbtxt")
    with open(schema_file, "w") as f:
        f.write(schemas.schema_text(config))
    gen = example_gen.ClickLogExampleGen(input_base=folder,
                                         dataset_config=json.dumps(config.to_dict()))
    split = ItemSplitGen(examples=gen.outputs["examples"], N=config.N, K=config.K)
    schema = tfx.components.ImportSchemaGen(schema_file=schema_file)
    transform = pipeline_lib.transform_component(split.outputs["split_examples"],
                                                 schema.outputs["schema"], config)
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="ingest-bench", pipeline_root=os.path.join(out, "tfx"),
        components=[gen, split, schema, transform],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(out, "metadata.sqlite")),
        beam_pipeline_args=beam_args))


def measure(rows: int, preset: str, shards: int, keep: bool) -> dict:
    work = tempfile.mkdtemp(prefix=f"ingest_{rows}_")
    folder, out = os.path.join(work, "log"), os.path.join(work, "out")
    os.makedirs(folder)
    os.makedirs(out)
    start = time.perf_counter()
    write_log(folder, rows, shards)
    generate = time.perf_counter() - start
    code, wall, peak, samples = run_child([__file__, "--child", folder, out, preset],
                                          os.path.join(work, "log.txt"), interval=0.5)
    if code != 0:
        raise RuntimeError(f"pipeline failed, see {os.path.join(work, 'log.txt')}")
    from benchmarks.component_times import executions, intervals  # pylint: disable=import-outside-toplevel
    metadata = os.path.join(out, "metadata.sqlite")
    seconds = {name: s for _, name, _, s in executions(metadata)}
    # RSS rarely falls back within one process, so a component's figure is the high-water mark
    # at its end; the rise over the previous one is what it added.
    peaks = {name: max([rss for t, rss in samples if start <= t <= end] or [0]) / 2 ** 30
             for name, (start, end) in intervals(metadata).items()}
    if not keep:
        subprocess.run(["rm", "-rf", work], check=False)
    return {"rows": rows, "generate_s": generate, "wall_s": wall, "peak_gb": peak / 2 ** 30,
            **{f"{k}_s": v for k, v in seconds.items()},
            **{f"{k}_peak_gb": v for k, v in peaks.items()}}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        from pipeline import beam_presets  # pylint: disable=import-outside-toplevel
        _pipeline(sys.argv[2], sys.argv[3], beam_presets.beam_args(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    p.add_argument("--preset", default="direct", help="Beam preset (pipeline/beam_presets.py)")
    p.add_argument("--shards", type=int, default=8, help="CSV files per log")
    p.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GB; "
          f"Beam preset {args.preset}; {args.shards} CSV shards per log")
    print(f"{'rows':>11} {'ExampleGen':>11} {'split':>8} {'Transform':>10} {'total':>8} "
          f"{'rows/s':>8} {'peak GB':>8}")
    for rows in args.rows:
        r = measure(rows, args.preset, args.shards, args.keep)
        parts = [r.get(f"{c}_s", float("nan")) for c in ("ClickLogExampleGen", "ItemSplitGen", "Transform")]
        print(f"{rows:>11,} {parts[0]:>10.0f}s {parts[1]:>7.0f}s {parts[2]:>9.0f}s "
              f"{r['wall_s']:>7.0f}s {rows / r['wall_s']:>8,.0f} {r['peak_gb']:>8.2f}", flush=True)
        print("             peak GB during " + ", ".join(
            f"{c} {r.get(f'{c}_peak_gb', float('nan')):.2f}" for c in COMPONENTS), flush=True)
    print("seconds per component from MLMD (execution start to end); total = the child process's "
          "wall time (imports and orchestration included); rows/s = rows / total.")


if __name__ == "__main__":
    main()
