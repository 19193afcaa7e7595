"""TFX component: fails the run when ExampleValidator found anomalies, naming field and problem."""
import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts

SCHEMA_DIFF = "SchemaDiff.pb"  # ExampleValidator's file per split


class SchemaAnomalies(RuntimeError):
    pass


def describe(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per (split, feature) anomaly: 'split: feature: short (description)'."""
    lines = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"{split}: {feature}: {info.short_description} ({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"{split}: (dataset): {info.short_description} ({info.description})")
    return lines


def read_anomalies(uri: str, splits: List[str]) -> Dict[str, anomalies_pb2.Anomalies]:
    out = {}
    for split in splits:
        anomalies = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(os.path.join(uri, f"Split-{split}", SCHEMA_DIFF), "rb") as f:
            anomalies.ParseFromString(f.read())
        out[split] = anomalies
    return out


@component
def AnomalyGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    code_version: Parameter[str] = "",  # cache key only  # pylint: disable=unused-argument
) -> None:
    """Raises SchemaAnomalies listing every anomaly; passes silently when there is none."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    lines = describe(read_anomalies(anomalies.uri, splits))
    if lines:
        raise SchemaAnomalies("the examples do not match the schema:\n  " + "\n  ".join(lines))
