"""Trainer module file: pretrains one backbone per seed on the `base` split (spec 3.1).

custom_config: {"backbone": str, "seeds": [int], "train": TrainConfig fields,
"features": features.to_json(FeatureConfig)}.
Output under the Model artifact: `seed_<s>/weights*` (TF checkpoint) and `seed_<s>/backbone.json`;
a seed whose pretraining loss is not finite is saved nowhere and listed, with the message, under
`failed` in `train_config.json` (the other seeds go on).
"""
import dataclasses
import json
import os

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import backbones, data, features, preprocessing, protocol

CONFIG_FILE = "backbone.json"


def seed_dir(model_dir: str, seed: int) -> str:
    return os.path.join(model_dir, f"seed_{seed}")


def save(model: backbones.CTRBackbone, directory: str) -> None:
    tf.io.gfile.makedirs(directory)
    model.save_weights(os.path.join(directory, "weights"))
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(model.get_config(), f, indent=1, sort_keys=True)


def load(directory: str, sample: protocol.Arrays) -> backbones.CTRBackbone:
    """Rebuilds a saved backbone (same class, same vocabularies) and restores its weights."""
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE)) as f:
        config = json.load(f)
    model = backbones.build(config["backbone"], features.from_json(config["features"]),
                            config["vocab_sizes"], embed_dim=config["embed_dim"],
                            **config.get("options", {}))
    protocol.ensure_built(model, sample)
    model.load_weights(os.path.join(directory, "weights")).assert_existing_objects_matched()
    return model


def pretrain(backbone: str, feature_config: features.FeatureConfig, vocab_sizes,
             base: protocol.Arrays, config: protocol.TrainConfig, seed: int,
             log=None) -> backbones.CTRBackbone:
    protocol.seed_everything(seed)
    model = backbones.build(backbone, feature_config, vocab_sizes)
    protocol.ensure_built(model, base)
    try:
        protocol.train(model, base, model.trainable_variables, config, config.pretrain_epochs,
                       seed, log, phase="pretraining on base")
    except protocol.NonFiniteLoss as err:
        raise err.attach(f"{backbone} backbone", seed)
    return model


def run_fn(fn_args: FnArgs) -> None:
    custom = fn_args.custom_config or {}
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tft_output.transformed_feature_spec()
    files = [f for pattern in fn_args.train_files for f in tf.io.gfile.glob(pattern)]
    base = data.load_files(files, spec)
    feature_config = features.from_json(custom["features"])
    vocab_sizes = preprocessing.vocab_sizes(tft_output, feature_config)
    config = protocol.TrainConfig(**custom.get("train", {}))
    failed = {}
    for seed in custom.get("seeds", [0]):
        log = protocol.Progress(prefix=f"seed {seed} ")
        log.start(f"pretrain {custom.get('backbone', 'deepfm')} on base ({len(base[features.LABEL])} rows)")
        try:
            model = pretrain(custom.get("backbone", "deepfm"), feature_config, vocab_sizes, base,
                             config, seed, log)
        except protocol.NonFiniteLoss as err:
            log.note(str(err))
            failed[str(seed)] = str(err)
            continue
        save(model, seed_dir(fn_args.serving_model_dir, seed))
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, "train_config.json"), "w") as f:
        json.dump({**custom, "train": dataclasses.asdict(config), "failed": failed}, f, indent=1,
                  sort_keys=True)
