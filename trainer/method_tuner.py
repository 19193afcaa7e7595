"""The search: a keras-tuner tuner whose trial is one run of the protocol's tuning view (issue 17).

`build_oracle` gives keras-tuner's random, Bayesian or Hyperband oracle over `hyperparameters(label,
space)`; random and Bayesian search start with the method's defaults (trial 0).
`MethodTuner.run_trial` builds the method's options from the trial's hyperparameters (trainer/
tuning.py names them `<label>.<option>`) and calls an objective `objective(options) -> float`,
higher is better. It builds and saves no model, so keras-tuner never sees a tf_keras model
(keras-tuner 1.4.8 rejects them). A trial whose options fail the method's checks, or whose
training is not finite, fails alone (keras-tuner stops after 3 failures in a row); any other
error stops the search. Every trial is recorded: options, objective, status, wall time.

`protocol_objective` is the objective of a protocol's tuning view, its `tuning_objective` averaged
over the tuning seeds (item phases: the mean AUC over cold, warm_a, warm_b, warm_c of the held-out
old items; leave_last_out: the overall AUC on the second-to-last events; per_domain: the cold
domains' AUC after adaptation, on the final view's validation rows). It reads
data only through the ProtocolContext it is given, and never opens files itself.
"""
import json
import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import keras_tuner as kt
from keras_tuner.src.engine import base_tuner, trial as trial_lib
import numpy as np

from trainer import methods, protocol, tuning
from trainer import options as options_lib


def hyperparameters(label: str, space: Mapping[str, Mapping[str, Any]]) -> kt.HyperParameters:
    """The HyperParameters of a checked space (tuning.search_spaces), named `<label>.<option>`;
    each default is the method's default where the space can draw it (else keras-tuner's)."""
    defaults = methods.method_class(label).defaults
    hp = kt.HyperParameters()
    for option, spec in space.items():
        name = f"{label}.{option}"
        default = defaults[option] if tuning.in_space(spec, defaults[option]) else None
        if spec["type"] == "choice":
            hp.Choice(name, spec["values"], default=default)
        elif spec["type"] == "int":
            hp.Int(name, spec["min"], spec["max"], step=spec["step"], sampling=spec["sampling"],
                   default=default)
        else:
            hp.Float(name, spec["min"], spec["max"], sampling=spec["sampling"], default=default)
    return hp


def _defaults_first(oracle_class):
    """`oracle_class` whose first trial runs the method's defaults (the HyperParameters' default
    values), so the search reports the defaults' objective and never keeps worse options."""

    class DefaultsFirst(oracle_class):
        def populate_space(self, trial_id):
            if self.trials:
                return super().populate_space(trial_id)
            values = dict(self.hyperparameters.values)
            self._duplicate(values)  # noted as tried: no random trial repeats it
            return {"status": trial_lib.TrialStatus.RUNNING, "values": values}

    DefaultsFirst.__name__ = oracle_class.__name__
    return DefaultsFirst


DEFAULTS_FIRST = {"random": _defaults_first(kt.oracles.RandomSearchOracle),
                  "bayesian": _defaults_first(kt.oracles.BayesianOptimizationOracle)}


def build_oracle(kind: str, hp: kt.HyperParameters, trials: int, seed: int, budget: int = 1,
                 defaults_first: bool = True) -> kt.Oracle:
    """The keras-tuner oracle `random`, `bayesian` or `hyperband` over `hp`, maximising the
    objective. keras-tuner draws a random seed for a seed of 0, so the oracle gets `seed + 1`.
    `defaults_first` (random, bayesian): trial 0 runs hp's defaults (the method's, where the
    space holds every one of them: see `hyperparameters`).
    Hyperband: its resource ("epochs") is the number of tuning seeds a trial averages over
    (`budget`: all of them) and `trials` is its number of Hyperband iterations."""
    tuning.check_search(kind, trials)
    common = {"objective": kt.Objective(tuning.OBJECTIVE, "max"), "hyperparameters": hp,
              "seed": seed + 1, "allow_new_entries": False, "tune_new_entries": False}
    if kind == "hyperband":
        return kt.oracles.HyperbandOracle(max_epochs=max(budget, 2), hyperband_iterations=trials,
                                          **common)
    if defaults_first:
        return DEFAULTS_FIRST[kind](max_trials=trials, **common)
    oracle_class = {"random": kt.oracles.RandomSearchOracle,
                    "bayesian": kt.oracles.BayesianOptimizationOracle}[kind]
    return oracle_class(max_trials=trials, **common)


class FailedTrial(Exception):
    """Raised by an objective for options it cannot evaluate: the trial fails alone."""


class MethodTuner(base_tuner.BaseTuner):
    """Tunes the options of one method label; `fixed`: its options from --set, in every trial."""

    def __init__(self, oracle, label: str, objective: Callable[..., float],
                 fixed: Optional[Mapping[str, Any]] = None, log=None, **kwargs):
        self.label, self.objective_fn = label, objective
        self.cls = methods.method_class(label)
        self.fixed = dict(fixed or {})
        self.log = log or protocol.Progress(prefix=f"tune {label} ")
        self.trials: List[Dict[str, Any]] = []
        self.started = time.time()
        super().__init__(oracle, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        searched = tuning.options_of(values, self.label).get(self.label, {})
        record = {"trial_id": trial.trial_id, "options": searched, "objective": None,
                  "status": "failed", "message": "", "wall_s": 0.0,
                  "defaults": all(self.cls.defaults[o] == v for o, v in searched.items())}
        self.trials.append(record)
        start = time.time()
        try:
            options = options_lib.validate(self.cls, {**self.fixed, **searched}, self.label)
            budget = {"budget": values["tuner/epochs"]} if "tuner/epochs" in values else {}
            value = float(self.objective_fn(options, **budget))
            if not math.isfinite(value):
                raise FailedTrial(f"objective is {value}")
        except (ValueError, FailedTrial, protocol.NonFiniteLoss) as err:
            record.update(message=str(err), wall_s=time.time() - start)
            self.log.note(f"trial {trial.trial_id} {searched}: failed: {err}")
            raise kt.errors.FailedTrialError(str(err)) from err
        except Exception as err:  # a bug: stop the search rather than count a failed trial
            raise kt.errors.FatalError(f"{self.label} trial {trial.trial_id}: {err!r}") from err
        record.update(objective=value, status="completed", wall_s=time.time() - start)
        self.log.note(f"trial {trial.trial_id} {searched}: objective {value:.4f} "
                      f"({record['wall_s']:.1f}s)")
        return {tuning.OBJECTIVE: value}

    def save_model(self, trial_id, model, step=0):
        """No model to save: a trial is one run of the protocol."""

    def results(self) -> Dict[str, Any]:
        """Trials in order, the best completed one (options with the fixed ones) and wall time."""
        done = [t for t in self.trials if t["status"] == "completed"]
        best = max(done, key=lambda t: t["objective"]) if done else None  # first of equals
        return {"method": self.label, "oracle": type(self.oracle).__name__,
                "trials": [dict(t) for t in self.trials],
                "best": None if best is None else {
                    "trial_id": best["trial_id"], "objective": best["objective"],
                    "options": {**self.fixed, **best["options"]}},
                "wall_s": time.time() - self.started}

    def best_options(self) -> Dict[str, Any]:
        """The best trial's searched options (keras-tuner's choice; raises if none completed)."""
        best = self.oracle.get_best_trials(1)
        if not best:
            raise RuntimeError(f"tune {self.label}: no trial completed")
        return tuning.options_of(best[0].hyperparameters.values, self.label)[self.label]


def make_tuner(label: str, space, objective: Callable[..., float], kind: str = "random",
               trials: int = 10, seed: int = 0, directory: str = ".",
               fixed: Optional[Mapping[str, Any]] = None, budget: int = 1,
               log=None) -> MethodTuner:
    """A MethodTuner for method `label` over the checked `space` (tuning.search_spaces); its
    keras-tuner state goes under `directory/<label>` (overwritten). `budget`: Hyperband's
    resource, the number of tuning seeds (build_oracle). Trial 0 runs the method's defaults
    when the space holds every one of them (random, bayesian)."""
    hp = hyperparameters(label, space)
    defaults = methods.method_class(label).defaults
    inside = all(tuning.in_space(spec, defaults[option]) for option, spec in space.items())
    oracle = build_oracle(kind, hp, trials, seed, budget, defaults_first=inside)
    return MethodTuner(oracle, label=label, objective=objective, fixed=fixed, log=log,
                       directory=directory, project_name=label.replace("/", "_"), overwrite=True)


def write_best_hyperparameters(tuner: MethodTuner, path: str) -> None:
    """The best trial's HyperParameters config as JSON, the TFX Tuner's format
    (tuning.load_hyperparameters reads it back)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tuner.get_best_hyperparameters()[0].get_config(), f, sort_keys=True)


def protocol_objective(label: str, context, load_backbone: Callable[[int], Any],
                       seed_config: Callable[[int], protocol.TrainConfig], seeds: Sequence[int],
                       stages: Optional[Sequence[str]] = None, metric: str = "auc"
                       ) -> Callable[..., float]:
    """objective(options, budget=None): the protocol's `tuning_objective` of `metric` over
    `stages` (default: the protocol's; item phases: the mean over every stage), averaged over the
    first `budget` of `seeds` (default: all). Each run starts
    from a fresh `load_backbone(seed)` (the tuning backbone pretrained with that seed) with
    `seed_config(seed)` and reads data only through `context`, the tuning view's
    ProtocolContext."""
    names = [s.name for s in context.stages]
    unknown = sorted(set(stages or ()) - set(names))
    if unknown:
        raise ValueError(f"objective stages {unknown} are not stages of protocol "
                         f"{context.protocol.name}: {names}")
    if not seeds:
        raise ValueError("the objective needs at least one tuning seed")

    def objective(options: Mapping[str, Any], budget: Optional[int] = None) -> float:
        per_seed = []
        for seed in list(seeds)[:budget or len(seeds)]:
            method = methods.build(label, seed=seed, **options)
            try:
                results = protocol.warm_up_and_evaluate(load_backbone(seed), context,
                                                        seed_config(seed), seed, method)
            except protocol.NonFiniteLoss as err:
                raise err.attach(label, seed)
            per_seed.append(context.protocol.tuning_objective(results, stages, metric))
        return float(np.mean(per_seed))

    return objective
