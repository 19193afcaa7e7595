"""The method interface, and `base`: the plain backbone with no cold-start treatment (spec 4.1)."""


class ColdStartMethod:
    name = ""
    needs_base = False  # whether `splits` must hold the `base` split too
    defaults: dict = {}  # every option a method takes, with its default

    def __init__(self, seed: int = 0, **options):
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.name}: unknown options {sorted(unknown)}; "
                             f"known: {sorted(self.defaults) or 'none'}")
        self.seed = seed
        self.options = {**self.defaults, **options}

    def prepare(self, backbone, splits, config) -> None:
        """Called once before the cold evaluation."""

    def after_warm(self, backbone, warm_split: str, splits, config) -> None:
        """Called after the item-ID table was fine-tuned on `warm_split`."""


class Base(ColdStartMethod):
    name = "base"
