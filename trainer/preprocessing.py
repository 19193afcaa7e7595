"""tf.Transform preprocessing_fn (module file of the Transform component).

Statistics come from every split the Transform analyzes; the pipeline analyzes the whole log
(all six splits, `dropped` included), as the reference computes them before splitting (spec 1.7).
- spr: vocabulary index, one OOV bucket -> [0, V].
- seq: vocabulary index + 1, right-padded with 0 to L (0 never collides with a real token;
  the reference pads with an index that is also a word, spec D19).
- ctn: min-max scaled to [0, 1].
- hist: index in the vocabulary of the field `vocab` (computed from that field alone, so a
  history never changes its ids) + 1, right-padded with 0 to L (`hist_item_id`: item ids).
- raw: float32 as it is (`hist_len`).

custom_config: {"features": features.to_json(FeatureConfig), "slice_features": [str]} (set by
the pipeline).
"""
import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.protocols import slice_column


def vocab_name(field_name: str) -> str:
    return f"vocab_{field_name}"


def _dense_ids(sparse_ids: tf.SparseTensor, seq_len: int) -> tf.Tensor:
    padded = tf.sparse.SparseTensor(sparse_ids.indices, sparse_ids.values + 1, sparse_ids.dense_shape)
    batch = padded.dense_shape[0]
    clipped = tf.sparse.slice(padded, [0, 0], [batch, seq_len])
    clipped = tf.sparse.reset_shape(clipped, [batch, seq_len])
    dense = tf.sparse.to_dense(clipped, default_value=0)
    dense.set_shape([None, seq_len])
    return dense


def preprocessing_fn(inputs, custom_config):
    outputs = {}
    config = features.from_json(custom_config["features"])
    shared = {f.vocab for f in config.by_kind("hist")}
    vocabularies = {}  # of the fields a history shares
    for field in config.fields:
        raw = inputs[field.name]
        if field.kind == "spr" and field.name in shared:
            vocabularies[field.name] = tft.vocabulary(raw, vocab_filename=vocab_name(field.name))
            ids = tft.apply_vocabulary(raw, vocabularies[field.name], num_oov_buckets=1)
            outputs[field.name] = tf.reshape(ids, [-1])
        elif field.kind == "spr":
            ids = tft.compute_and_apply_vocabulary(
                raw, num_oov_buckets=1, vocab_filename=vocab_name(field.name))
            outputs[field.name] = tf.reshape(ids, [-1])
        elif field.kind == "seq":
            ids = tft.compute_and_apply_vocabulary(
                raw, num_oov_buckets=1, vocab_filename=vocab_name(field.name))
            outputs[field.name] = _dense_ids(ids, field.seq_len)
        elif field.kind == "hist":
            ids = tft.apply_vocabulary(raw, vocabularies[field.vocab], num_oov_buckets=1)
            outputs[field.name] = _dense_ids(ids, field.seq_len)
        elif field.kind == "raw":
            outputs[field.name] = tf.reshape(tf.cast(raw, tf.float32), [-1])
        else:
            value = tf.reshape(tf.cast(raw, tf.float32), [-1])
            outputs[field.name] = tft.scale_to_0_1(value)
    outputs[features.LABEL] = tf.reshape(inputs[features.LABEL], [-1])
    # Raw values of the protocol's slice features (user_group, domain), for slicing and for
    # stages restricted to some of their values; no model reads them.
    for name in custom_config.get("slice_features", []):
        outputs[slice_column(name)] = tf.reshape(tf.strings.as_string(inputs[name])
                                                 if inputs[name].dtype != tf.string
                                                 else inputs[name], [-1])
    return outputs


def vocab_sizes(tf_transform_output: tft.TFTransformOutput,
                config: features.FeatureConfig) -> dict:
    """Embedding table rows per spr/seq/hist field: vocabulary + OOV bucket (+ padding for seq
    and hist; a hist field counts the vocabulary it shares, e.g. item_id's + 1)."""
    sizes = {}
    for field in config.fields:
        if field.kind in ("spr", "seq", "hist"):
            vocab = field.vocab if field.kind == "hist" else field.name
            size = tf_transform_output.vocabulary_size_by_name(vocab_name(vocab)) + 1
            sizes[field.name] = size + (1 if field.kind in ("seq", "hist") else 0)
    return sizes
