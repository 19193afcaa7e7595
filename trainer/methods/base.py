"""The method interface, and `base`: the plain backbone with no cold-start treatment (spec 4.1)."""
import tensorflow as tf

from trainer import backbones, protocol
from trainer import options as options_lib


class ColdStartMethod:
    name = ""
    # The protocols (trainer/protocols) the method runs on; None: every one. The methods of
    # item cold-start write new items' rows of the item-ID table, so they need item phases.
    protocols = ("item_frequency",)
    defaults: dict = {}  # every option a method takes, with its default (which gives its type)
    choices: dict = {}   # option -> tuple of allowed values
    bounds: dict = {}    # option -> (low, high), inclusive; None: unbounded
    owns_warm_up = False  # True: `warm_up` replaces the protocol's item-ID fine-tune
    own_backbone = ""  # set when the method evaluates a model of its own (shown in the report)

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.options = options_lib.validate(type(self), options)

    @classmethod
    def check(cls, options: dict) -> None:
        """Checks across options (`options`: all of them); raises ValueError."""

    def prepare(self, backbone, context, config):
        """Called once before the first evaluation; may return the model to evaluate instead of
        `backbone` (a method with its own backbone). `context`: trainer.context.ProtocolContext."""

    def warm_up(self, model, stage, context, config) -> None:
        """With `owns_warm_up`: adapts on `context.adaptation_data(stage)` instead of the
        protocol's default (training what `stage.trains` names)."""

    def after_warm(self, backbone, stage, context, config) -> None:
        """Called after the protocol's adaptation of `stage` (trainer/protocols.Stage)."""

    def report_diagnostics(self) -> dict:
        """After the run: what the report shows of this (method, seed), JSON-ready; {}: nothing.
        WarmupEvaluate stores it in phase_metrics.json `diagnostics` {label: {seed: ...}}."""
        return {}


def check_protocol(label: str, cls, protocol_name: str) -> None:
    """A clear error before any work when method `label` does not run on the protocol."""
    if cls.protocols is not None and protocol_name not in cls.protocols:
        raise ValueError(f"method {label} runs on protocol(s) {', '.join(cls.protocols)}, "
                         f"not {protocol_name}")


class Base(ColdStartMethod):
    name = "base"
    protocols = None


def fresh_backbone(backbone: backbones.CTRBackbone, seed: int,
                   sample: protocol.Arrays) -> backbones.CTRBackbone:
    """An untrained backbone of the same class and vocabularies, initialised exactly as the
    Trainer initialises the base backbone of `seed` (for methods that change pretraining), with
    the architecture options its `get_config` records (as `task.load` rebuilds it)."""
    protocol.seed_everything(seed)
    model = backbones.build(backbone.registry_name, backbone.config, backbone.vocab_sizes,
                            embed_dim=backbone.embed_dim,
                            **backbone.get_config().get("options", {}))
    protocol.ensure_built(model, sample)
    return model


def copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    """All weights (BatchNorm statistics included) of `source` into `target`, in place."""
    target.set_weights(source.get_weights())
