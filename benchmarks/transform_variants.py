"""Transform alone on a finished run's split examples, one configuration at a time (not a test).

    .venv/bin/python benchmarks/transform_variants.py RUN_OUT [--dataset ml-100k] [--variant NAME ...]

RUN_OUT is the --output folder of a `coldstart run` (its ItemSplitGen output and data set are
reused). Each variant runs ImportSchemaGen + Transform as its own small TFX pipeline and prints
Transform's wall time from ML Metadata. Variants: keyword arguments of
`pipeline.transform_component`'s Transform, see VARIANTS.
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VARIANTS = {
    "old": {"force_tf_compat_v1": False, "disable_analyzer_cache": False,
            "stock_tfx": True},  # before issue 12: TFX's Transform, Beam record I/O
    "no_cache": {"force_tf_compat_v1": False, "disable_analyzer_cache": True},
    "compat_v1": {"force_tf_compat_v1": True, "disable_analyzer_cache": False},
    "compat_v1_no_cache": {"force_tf_compat_v1": True, "disable_analyzer_cache": True},
    "new": {},  # pipeline.transform_component as it is now
}


def run_variant(run_out: str, dataset_name: str, variant: str, work: str) -> float:
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
    from benchmarks.component_times import executions  # pylint: disable=import-outside-toplevel
    from components.item_split import SPLITS  # pylint: disable=import-outside-toplevel
    from pipeline import beam_presets, pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel

    metadata = pipeline_lib.local_paths(run_out)["metadata_path"]
    split_uri = [u for u in pipeline_lib.artifact_uris(metadata, "Examples") if "/ItemSplitGen/" in u][-1]
    from pipeline import cli  # pylint: disable=import-outside-toplevel
    import schemas  # pylint: disable=import-outside-toplevel
    dataset = cli.load_dataset(dataset_name)
    examples = tfx.dsl.Importer(source_uri=split_uri, artifact_type=tfx.types.standard_artifacts.Examples,
                                properties={"split_names": json.dumps(list(SPLITS))}).with_id("split")
    schema = tfx.components.ImportSchemaGen(schema_file=schemas.schema_path(dataset.name))
    transform = pipeline_lib.transform_component(examples.outputs["result"], schema.outputs["schema"],
                                                 dataset, **VARIANTS[variant])
    out = os.path.join(work, variant)
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=f"transform-{variant}", pipeline_root=os.path.join(out, "tfx"),
        components=[examples, schema, transform],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(out, "metadata.sqlite")),
        beam_pipeline_args=beam_presets.beam_args("direct")))
    return {name: s for _, name, _, s in executions(os.path.join(out, "metadata.sqlite"))}["Transform"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_out")
    p.add_argument("--dataset", default="ml-100k", help="the run's built-in data set")
    p.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work", default=None, help="keep outputs here (default: a temp folder)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="transform_variants_")
    for variant in args.variant:
        start = time.perf_counter()
        seconds = run_variant(args.run_out, args.dataset, variant, work)
        print(f"{variant:<12} Transform {seconds:6.1f} s (MLMD), {time.perf_counter() - start:6.1f} s "
              f"with the small pipeline around it", flush=True)


if __name__ == "__main__":
    main()
