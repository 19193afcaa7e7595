"""Our ingestion against stock TFX components on the same rows (not a test).

    .venv/bin/python benchmarks/ingest_vs_stock.py [--data-dir ../shared/datasets/ml-1m-users1-2999]
        [--repeat 1]

(a) stock: CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform (one vocabulary per
    categorical field, title and genre tokens, scaled timestamp, label = rating >= 4) on the
    ratings joined with users.dat and movies.dat into one CSV (written first, not timed);
(b) ours: ClickLogExampleGen -> ItemSplitGen -> StatisticsGen -> Transform, as the pipeline
    builds them (pipeline.statistics_component, pipeline.transform_component).
Each runs as a TFX pipeline (LocalDagRunner, in-process DirectRunner) in a child process; it
prints the summed component times from ML Metadata, the child's wall time (imports and
orchestration included), the child's CPU time (user + system; the fairest figure when other
jobs share the cores), the ratios ours / stock, and the peak RSS of the child's process tree
(sampled every 0.2 s). --repeat R alternates stock and ours R times.
"""
import argparse
import csv
import gzip
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from pipeline import beam_presets  # pylint: disable=wrong-import-position

ML1M = os.path.join(ROOT, "..", "shared", "datasets", "ml-1m-users1-2999")
CATEGORICAL = ("user_id", "gender", "age", "occupation", "zip_code", "item_id")
COLUMNS = ("user_id", "item_id", "rating", "timestamp", "gender", "age", "occupation", "zip_code",
           "title", "genres")
BEAM_ARGS = beam_presets.beam_args("direct")  # the same for both pipelines


def write_joined_csv(data_dir: str, path: str) -> int:
    """ratings.dat[.gz] joined with users.dat and movies.dat, as one CSV; returns the rows."""
    def read(name, encoding="latin-1"):
        with open(os.path.join(data_dir, name), encoding=encoding) as f:
            return {line.split("::", 1)[0]: line.rstrip("\n").split("::")[1:] for line in f}
    users, movies = read("users.dat"), read("movies.dat")
    ratings = os.path.join(data_dir, "ratings.dat")
    opener = (lambda: gzip.open(ratings + ".gz", "rt")) if not os.path.exists(ratings) else (
        lambda: open(ratings))
    rows = 0
    with opener() as f, open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for line in f:
            user, item, rating, timestamp = line.rstrip("\n").split("::")
            writer.writerow([user, item, rating, timestamp, *users[user], *movies[item]])
            rows += 1
    return rows


def stock_preprocessing_fn(inputs):
    """Stock Transform: vocabularies, whitespace title tokens, '|' genre tokens, scaled time."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    def flat(x):
        return tf.reshape(tf.sparse.to_dense(x) if isinstance(x, tf.SparseTensor) else x, [-1])
    out = {name: tft.compute_and_apply_vocabulary(flat(inputs[name]), num_oov_buckets=1)
           for name in CATEGORICAL}
    out["title"] = tft.compute_and_apply_vocabulary(
        tf.strings.split(flat(inputs["title"])).to_sparse(), num_oov_buckets=1)
    out["genres"] = tft.compute_and_apply_vocabulary(
        tf.strings.split(flat(inputs["genres"]), "|").to_sparse(), num_oov_buckets=1)
    out["timestamp"] = tft.scale_to_0_1(tf.cast(flat(inputs["timestamp"]), tf.float32))
    out["label"] = tf.cast(flat(inputs["rating"]) >= 4, tf.int64)
    return out


def _stock(data: str, out: str):
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
    gen = tfx.components.CsvExampleGen(input_base=data)
    stats = tfx.components.StatisticsGen(examples=gen.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=stats.outputs["statistics"])
    transform = tfx.components.Transform(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn="benchmarks.ingest_vs_stock.stock_preprocessing_fn")
    return [gen, stats, schema, transform]


def _ours(data: str, out: str):
    import json  # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
    from components import example_gen  # pylint: disable=import-outside-toplevel
    from components.split_component import ItemSplitGen  # pylint: disable=import-outside-toplevel
    from pipeline import cli, pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    import schemas  # pylint: disable=import-outside-toplevel
    config = cli.load_dataset("ml-1m")
    gen = example_gen.ClickLogExampleGen(input_base=data,
                                         dataset_config=json.dumps(config.to_dict(), sort_keys=True))
    split = ItemSplitGen(examples=gen.outputs["examples"], N=config.N, K=config.K)
    stats = pipeline_lib.statistics_component(split.outputs["split_examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=schemas.schema_path("ml-1m"))
    transform = pipeline_lib.transform_component(split.outputs["split_examples"],
                                                 schema.outputs["schema"], config)
    return [gen, split, stats, schema, transform]


def child(kind: str, data: str, out: str) -> None:
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
    components = (_stock if kind == "stock" else _ours)(data, out)
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=f"ingest-{kind}", pipeline_root=os.path.join(out, "tfx"),
        components=components, beam_pipeline_args=BEAM_ARGS,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(out, "metadata.sqlite"))))


def measure(kind: str, data: str, work: str) -> dict:
    from benchmarks.ingest import run_child  # pylint: disable=import-outside-toplevel
    out = tempfile.mkdtemp(prefix=f"{kind}_", dir=work)
    log = os.path.join(out, "log.txt")
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, wall, peak, _ = run_child([os.path.abspath(__file__), "--child", kind, data, out], log,
                                    interval=0.2)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    if code != 0:
        raise RuntimeError(f"{kind} pipeline failed, see {log}")
    from benchmarks.component_times import executions  # pylint: disable=import-outside-toplevel
    seconds = {name: s for _, name, _, s in executions(os.path.join(out, "metadata.sqlite"))}
    return {"kind": kind, "wall": wall, "cpu": cpu, "mlmd": sum(seconds.values()), "peak_gb": peak / 2 ** 30,
            "components": seconds}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=ML1M)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--work", help="keep outputs here (default: a temp folder, removed)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="ingest_vs_stock_")
    csv_dir = os.path.join(work, "csv")
    os.makedirs(csv_dir, exist_ok=True)
    rows = write_joined_csv(args.data_dir, os.path.join(csv_dir, "ratings.csv"))
    print(f"{rows:,} rows ({args.data_dir}); {os.cpu_count()} cores; in-process DirectRunner; "
          f"peak = RSS of the child process tree", flush=True)
    results = {"stock": [], "ours": []}
    for run in range(args.repeat):
        for kind, data in (("stock", csv_dir), ("ours", os.path.abspath(args.data_dir))):
            r = measure(kind, data, work)
            results[kind].append(r)
            parts = ", ".join(f"{name} {s:.1f}" for name, s in r["components"].items() if s >= 0.05)
            print(f"run {run + 1} {kind:<5}: MLMD {r['mlmd']:6.1f} s, wall {r['wall']:6.1f} s, "
                  f"CPU {r['cpu']:6.1f} s, "
                  f"peak {r['peak_gb']:.2f} GB ({parts})", flush=True)
        stock, ours = results["stock"][-1], results["ours"][-1]
        print(f"run {run + 1} ratio ours/stock: MLMD {ours['mlmd'] / stock['mlmd']:.2f}, "
              f"wall {ours['wall'] / stock['wall']:.2f}, CPU {ours['cpu'] / stock['cpu']:.2f}, peak {ours['peak_gb'] / stock['peak_gb']:.2f}",
              flush=True)
    if not args.work:
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
