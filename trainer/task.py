"""Trainer module file: pretrains one backbone per seed on the `base` split (spec 3.1).

custom_config: {"backbone": str, "seeds": [int], "train": TrainConfig fields,
"features": features.to_json(FeatureConfig)}.
Output under the Model artifact: `seed_<s>/weights*` (TF checkpoint) and `seed_<s>/backbone.json`;
a seed whose pretraining loss is not finite is saved nowhere and listed, with the message, under
`failed` in `train_config.json` (the other seeds go on). With `train.early_stopping` > 0 the
Trainer's eval files (the protocol's validation split: pipeline.trainer_component refuses a
protocol without one) choose the epoch, and `train_config.json` lists under
`early_stopping` each seed's validation AUC per epoch and the epoch whose weights were kept.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import backbones, data, features, metrics, preprocessing, protocol

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


class EarlyStopping:
    """`protocol.train`'s `after_epoch`: the validation AUC after each epoch; stops after
    `patience` epochs without a better one. `restore()` puts back the best epoch's weights (every
    variable, BatchNorm statistics included)."""

    def __init__(self, model: tf.keras.Model, validation: protocol.Arrays, patience: int,
                 log=None):
        labels = validation[features.LABEL]
        if len(np.unique(labels)) < 2:
            raise ValueError(f"early stopping needs clicks and non-clicks in the validation rows; "
                             f"its {len(labels)} rows hold one label only")
        self.model, self.validation, self.log = model, validation, log
        self.best = protocol.BestWeights(model.variables, patience)

    def __call__(self, epoch: int) -> bool:
        stop = self.best.update(metrics.auc(self.validation[features.LABEL],
                                            protocol.predict(self.model, self.validation)))
        if self.log:
            self.log.note(f"epoch {epoch + 1}: validation AUC {self.best.scores[-1]:.4f} (best "
                          f"{self.best.scores[self.best.best_index]:.4f} at epoch "
                          f"{self.best.best_index + 1})")
        return stop

    def restore(self) -> None:
        self.best.restore()

    def summary(self) -> Dict[str, Any]:
        """Epochs counted from 1."""
        return {"patience": self.best.patience, "validation_auc": self.best.scores,
                "epochs": len(self.best.scores), "best_epoch": self.best.best_index + 1}


def seed_config(config: protocol.TrainConfig, early_stopping: Optional[Dict[str, Any]],
                seed: int) -> protocol.TrainConfig:
    """The TrainConfig of the cold-start methods run on `seed`'s backbone. Where the Trainer
    stopped early (`early_stopping`: train_config.json's, per seed), `pretrain_epochs` is the epoch
    it kept for that seed, so that a method that trains a backbone itself (icl, aqcl, dropoutnet,
    velf, ...) trains as many epochs as the base backbone it is compared with (aqcl.md 12.11)."""
    kept = (early_stopping or {}).get(str(seed))
    return dataclasses.replace(config, pretrain_epochs=kept["best_epoch"]) if kept else config


def pretrain(backbone: str, feature_config: features.FeatureConfig, vocab_sizes,
             base: protocol.Arrays, config: protocol.TrainConfig, seed: int,
             log=None, options=None, validation: Optional[protocol.Arrays] = None,
             summary: Optional[Dict[str, Any]] = None) -> backbones.CTRBackbone:
    """`options`: the backbone's architecture options (backbones.options_class). With
    `config.early_stopping` > 0, `validation` (required) chooses the epoch (EarlyStopping) and
    `summary`, if given, receives EarlyStopping.summary()."""
    protocol.seed_everything(seed)
    model = backbones.build(backbone, feature_config, vocab_sizes, **(options or {}))
    protocol.ensure_built(model, base)
    stopper = None
    if config.early_stopping:
        if validation is None:
            raise ValueError("early stopping needs validation rows")
        stopper = EarlyStopping(model, validation, config.early_stopping, log)
    try:
        protocol.train(model, base, model.trainable_variables, config, config.pretrain_epochs,
                       seed, log, phase="pretraining on base", after_epoch=stopper)
    except protocol.NonFiniteLoss as err:
        raise err.attach(f"{backbone} backbone", seed)
    if stopper:
        stopper.restore()
        if summary is not None:
            summary.update(stopper.summary())
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
    validation = None
    if config.early_stopping:
        validation = data.load_files(
            [f for pattern in fn_args.eval_files for f in tf.io.gfile.glob(pattern)], spec)
    failed, stopped = {}, {}
    for seed in custom.get("seeds", [0]):
        log = protocol.Progress(prefix=f"seed {seed} ")
        log.start(f"pretrain {custom.get('backbone', 'deepfm')} ({len(base[features.LABEL])} rows)")
        try:
            stopped[str(seed)] = {}
            model = pretrain(custom.get("backbone", "deepfm"), feature_config, vocab_sizes, base,
                             config, seed, log, custom.get("backbone_options", {}),
                             validation, stopped[str(seed)])
        except protocol.NonFiniteLoss as err:
            log.note(str(err))
            failed[str(seed)] = str(err)
            stopped.pop(str(seed))
            continue
        save(model, seed_dir(fn_args.serving_model_dir, seed))
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, "train_config.json"), "w") as f:
        json.dump({**custom, "train": dataclasses.asdict(config), "failed": failed,
                   **({"early_stopping": stopped} if config.early_stopping else {})},
                  f, indent=1, sort_keys=True)
