"""TFX component: the split of a registered evaluation protocol (trainer/protocols), in Beam.

`ProtocolSplitGen(examples, protocol="item_frequency", params='{"N": 200, "K": 20}')` writes the
protocol's splits and `split_stats.json` as ItemSplitGen does (for item_frequency's final view,
the same files: tests/test_protocols.py compares them)."""
import json

import apache_beam as beam
from tfx.dsl.component.experimental.annotations import (BeamComponentParameter, InputArtifact,
                                                        OutputArtifact, Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.split_component import read_split_stats, write_split
from trainer import protocols


@component(use_beam=True)
def ProtocolSplitGen(
    examples: InputArtifact[standard_artifacts.Examples],
    split_examples: OutputArtifact[standard_artifacts.Examples],
    protocol: Parameter[str],
    params: Parameter[str] = "{}",
    input_split: Parameter[str] = "all",
    code_version: Parameter[str] = "",  # cache key only  # pylint: disable=unused-argument
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Splits `examples` as the protocol `protocol` with `params` (a JSON object) says.

    Integer statistics become int custom properties of the artifact, the others JSON strings."""
    chosen = protocols.build(protocol, **json.loads(params))
    write_split(beam_pipeline, examples, split_examples, input_split, chosen.beam_split(),
                chosen.splits)
    for key, value in read_split_stats(split_examples.uri).items():
        if isinstance(value, int) and not isinstance(value, bool):
            split_examples.set_int_custom_property(key, value)
        else:
            split_examples.set_string_custom_property(key, json.dumps(value, sort_keys=True))
    split_examples.set_string_custom_property("protocol", json.dumps(chosen.describe(),
                                                                     sort_keys=True))
