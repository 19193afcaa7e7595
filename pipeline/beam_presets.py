"""Beam argument presets (`coldstart run --beam-preset NAME`); extra --beam-arg flags are added.

The same pipeline code runs on each: every Beam step is a plain PTransform, and the raw logs are
read one file per worker (shard large logs into many files to use many workers).
- direct:     in-process DirectRunner, one worker (default; the fastest for small data).
- direct-mp:  DirectRunner with one process per core (`--direct_running_mode=multi_processing`).
- dataflow:   Google Cloud Dataflow; needs --project, --region, --temp_location (gs://).
- flink:      a Flink cluster through the portable runner; needs --flink_master=HOST:PORT and an
              SDK harness image (--environment_config=IMAGE built from the Dockerfile).
- spark:      a Spark cluster through the portable runner; needs --spark_master_url and the image.
"""
import os
from typing import List, Sequence

# The direct runners run the SDK in this process (or its children) on this installation and read
# no container image. Naming one tells TFX the dependencies are provided, so it does not pack its
# own installation into an sdist per Beam component (about 2 s, 52 MB left under /tmp), and Beam
# has nothing to stage. (A --setup_file did the first, but Beam then built this project's sdist
# twice per Beam component: about 0.7 s each, a 220 KB tarball left under /tmp each time.)
LOCAL_ENVIRONMENT = "--sdk_container_image=local"

PRESETS = {
    "direct": ([LOCAL_ENVIRONMENT, "--direct_running_mode=in_memory", "--direct_num_workers=1"],
               ()),
    "direct-mp": ([LOCAL_ENVIRONMENT, "--direct_running_mode=multi_processing",
                   f"--direct_num_workers={os.cpu_count() or 1}"], ()),
    "dataflow": (["--runner=DataflowRunner", "--experiments=use_runner_v2",
                  "--setup_file=/pipeline/setup.py"], ("--project", "--region", "--temp_location")),
    "flink": (["--runner=FlinkRunner", "--environment_type=DOCKER"],
              ("--flink_master", "--environment_config")),
    "spark": (["--runner=SparkRunner", "--environment_type=DOCKER"],
              ("--spark_master_url", "--environment_config")),
}


def beam_args(preset: str, extra: Sequence[str] = ()) -> List[str]:
    """The preset's arguments followed by `extra`; raises ValueError naming missing flags."""
    if preset not in PRESETS:
        raise ValueError(f"unknown --beam-preset {preset!r}; known: {', '.join(PRESETS)}")
    args, required = PRESETS[preset]
    given = {a.split("=", 1)[0] for a in extra}
    missing = [flag for flag in required if flag not in given]
    if missing:
        raise ValueError(f"--beam-preset {preset} needs {', '.join(f'--beam-arg={m}=...' for m in missing)}")
    overridden = {a.split("=", 1)[0] for a in extra}
    return [a for a in args if a.split("=", 1)[0] not in overridden] + list(extra)
