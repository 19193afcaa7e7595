"""The method interface, and `base`: the plain backbone with no cold-start treatment (spec 4.1)."""


class ColdStartMethod:
    name = ""

    def __init__(self, seed: int = 0, **options):
        self.seed = seed
        self.options = options

    def prepare(self, backbone, splits, config) -> None:
        """Called once before the cold evaluation."""

    def after_warm(self, backbone, warm_split: str, splits, config) -> None:
        """Called after the item-ID table was fine-tuned on `warm_split`."""


class Base(ColdStartMethod):
    name = "base"
