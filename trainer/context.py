"""What a cold-start method sees of the evaluation protocol (issue 16): data by role, never by
split name.

A method reads
- `pretrain_data`: the rows the backbone pretrained on (item phases: the old items' rows);
- `validation_data`: the protocol's validation rows, or None;
- `eval_data`: the rows every stage is evaluated on;
- `new_item_rows`: rows of the items to warm up (the first adaptation stage's data; item phases:
  each new item's warm_a rows). Methods read their features, never their labels, before the
  stage that adapts on them;
- `adaptation_data(stage)`: the rows a stage may adapt on (restricted by `stage.adapt_where`);
  `seen_adaptation_data(stage)`: those of every adaptation stage up to and including `stage`;
- `stages`: the protocol's stages, in order (trainer/protocols.Stage).
Splits are loaded on first use, once.
"""
from typing import Callable, Dict, List, Optional

import numpy as np

from trainer.protocols import Protocol, Stage, slice_column, slice_value

Arrays = Dict[str, np.ndarray]


class ProtocolContext:

    def __init__(self, protocol: Protocol, load: Callable[[str], Arrays]):
        self.protocol = protocol
        self.stages: List[Stage] = protocol.stages()
        self._load = load
        self._cache: Dict[str, Arrays] = {}

    @classmethod
    def in_memory(cls, splits: Dict[str, Arrays], protocol: Optional[Protocol] = None
                  ) -> "ProtocolContext":
        """A context over splits already in memory (default protocol: item phases)."""
        if protocol is None:
            from trainer import protocols  # pylint: disable=import-outside-toplevel
            protocol = protocols.build("item_frequency")
        return cls(protocol, splits.__getitem__)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"protocol {self.protocol.name} has no stage {name!r}")

    def split(self, name: str) -> Arrays:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    @property
    def pretrain_data(self) -> Arrays:
        return self.split(self.protocol.pretrain_split)

    @property
    def validation_data(self) -> Optional[Arrays]:
        name = self.protocol.validation_split
        return self.split(name) if name else None

    @property
    def eval_data(self) -> Arrays:
        return self.split(self.protocol.eval_split)

    @property
    def adaptation_stages(self) -> List[Stage]:
        return [s for s in self.stages if s.adapt_split]

    @property
    def new_item_rows(self) -> Arrays:
        """Rows of the items to warm up: the first adaptation stage's data."""
        stages = self.adaptation_stages
        if not stages:
            raise ValueError(f"protocol {self.protocol.name} has no adaptation stage, so no items "
                             "to warm up")
        return self.adaptation_data(stages[0])

    def adaptation_data(self, stage: Stage) -> Arrays:
        if not stage.adapt_split:
            raise ValueError(f"stage {stage.name} adapts on nothing")
        arrays = self.split(stage.adapt_split)
        if stage.adapt_where is None:
            return arrays
        feature, values = stage.adapt_where
        # The raw values, as the protocol names them (the pipeline's data carries them beside
        # the vocabulary index); data without them is matched on the feature itself.
        column = arrays.get(slice_column(feature), arrays[feature])
        text = [slice_value(v) for v in column]
        wanted = np.array([str(v) for v in values], dtype=object)
        keep = np.isin(np.array(text, dtype=object), wanted)
        return {k: v[keep] for k, v in arrays.items()}

    def seen_adaptation_data(self, stage: Stage) -> Arrays:
        stages = self.adaptation_stages
        seen = [self.adaptation_data(s) for s in stages[:stages.index(stage) + 1]]
        return {k: np.concatenate([part[k] for part in seen]) for k in seen[0]}
