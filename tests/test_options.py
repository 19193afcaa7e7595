"""Method options: typed parsing of `--set`, declared choices and bounds, checks at build time."""
import json

import tensorflow as tf

from trainer import methods
from trainer import options

LABELS = ["base", "dropoutnet", "metae", "mwuf", "cvar", "velf", "csdm", "csdm/code"]


class ParseSetsTest(tf.test.TestCase):

    def test_values_take_the_type_of_their_default(self):
        parsed = options.parse_sets(
            ["csdm.iters=2", "csdm.forward_coef=sqrt_c", "csdm.train_denoiser=False",
             "csdm.beta_end=0.5", "csdm.diff_coef=10", "csdm/code.dropout=TRUE",
             "csdm/code.warm_data=current", "dropoutnet.dropout_prob=1", "velf.posterior_logvar=-3"],
            LABELS)
        self.assertEqual(parsed, {
            "csdm": {"iters": 2, "forward_coef": "sqrt_c", "train_denoiser": False,
                     "beta_end": 0.5, "diff_coef": 10.0},
            "csdm/code": {"dropout": True, "warm_data": "current"},
            "dropoutnet": {"dropout_prob": 1.0}, "velf": {"posterior_logvar": -3.0}})
        # A float option given as an integer is a float (as the method computes with it).
        self.assertIs(type(parsed["csdm"]["diff_coef"]), float)
        self.assertIs(type(parsed["dropoutnet"]["dropout_prob"]), float)
        self.assertIs(parsed["csdm"]["train_denoiser"], False)
        # What the pipeline passes to WarmupEvaluate (JSON) builds the same methods.
        for label, given in json.loads(json.dumps(parsed)).items():
            self.assertEqual(methods.build(label, **given).options,
                             {**methods.method_class(label).defaults, **parsed[label]})

    def test_each_wrong_item_is_one_error_naming_the_option(self):
        cases = {
            "csdm.T=1e2": "--set csdm.T=1e2: T takes an integer, not '1e2'",
            "csdm.T=0": "--set csdm.T=0: T must be at least 1, not 0",
            "csdm.iters=2.0": "--set csdm.iters=2.0: iters takes an integer, not '2.0'",
            "csdm.train_denoiser=1": "--set csdm.train_denoiser=1: train_denoiser takes true or "
                                     "false, not '1'",
            "csdm.train_denoiser=yes": "--set csdm.train_denoiser=yes: train_denoiser takes true "
                                       "or false, not 'yes'",
            "csdm.dropout=": "--set csdm.dropout=: dropout takes true or false, not ''",
            "csdm.forward_coef=sqrt": "--set csdm.forward_coef=sqrt: forward_coef must be c or "
                                      "sqrt_c, not 'sqrt'",
            "csdm.beta_end=2": "--set csdm.beta_end=2: beta_end must be between 0 and 1, not 2",
            "csdm.beta_end=x": "--set csdm.beta_end=x: beta_end takes a number, not 'x'",
            "csdm.beta_end=nan": "--set csdm.beta_end=nan: beta_end takes a number, not nan",
            "csdm.beta_end=1": "csdm: beta_start and beta_end must satisfy 0 < beta_start <= "
                               "beta_end < 1, not 1e-05 and 1",
            "csdm.beta_start=0.5": "csdm: beta_start and beta_end must satisfy 0 < beta_start <= "
                                   "beta_end < 1, not 0.5 and 1e-05",
            "csdm.stride=101": "csdm: stride (101) must be at most T (100)",
            "csdm.time_embedding=33": "csdm: time_embedding must be even (cosines and sines), "
                                      "not 33",
            "csdm.diff_coef=-1": "--set csdm.diff_coef=-1: diff_coef must be at least 0, not -1",
            "cvar.warm_data=all": "--set cvar.warm_data=all: warm_data must be current or "
                                  "cumulative, not 'all'",
            "cvar.iters=0": "--set cvar.iters=0: iters must be at least 1, not 0",
            "dropoutnet.dropout_prob=1.5": "--set dropoutnet.dropout_prob=1.5: dropout_prob must "
                                           "be between 0 and 1, not 1.5",
            "metae.epochs=0": "--set metae.epochs=0: epochs must be at least 1, not 0",
            "metae.alpha=-0.1": "--set metae.alpha=-0.1: alpha must be between 0 and 1, not -0.1",
            "velf.hyper_prior_std=0": "velf: hyper_prior_std must be above 0, not 0",
            "velf.kl_weight=-1e-3": "--set velf.kl_weight=-1e-3: kl_weight must be at least 0, "
                                    "not -0.001",
            "csdm.itres=2": "--set csdm.itres=2: csdm: unknown options ['itres']; known: [",
            "cvar.T=10": "--set cvar.T=10: cvar: unknown options ['T']; known: [",
            "base.iters=2": "--set base.iters=2: base: unknown options ['iters']; known: none",
            "mwuf.x=1": "--set mwuf.x=1: mwuf: unknown options ['x']; known: none",
            "iters=2": "--set takes METHOD.OPTION=VALUE, not 'iters=2'",
            "csdm.iters": "--set takes METHOD.OPTION=VALUE, not 'csdm.iters'",
        }
        for item, message in cases.items():
            with self.subTest(item=item):
                with self.assertRaises(ValueError) as raised:
                    options.parse_sets([item], LABELS)
                self.assertTrue(str(raised.exception).startswith(message), str(raised.exception))
                self.assertNotIn("\n", str(raised.exception))

    def test_labels_and_repeats(self):
        with self.assertRaisesRegex(ValueError, r"^--set csdm.iters=2: 'csdm' is not in --methods "
                                                r"base,csdm/code$"):
            options.parse_sets(["csdm.iters=2"], ["base", "csdm/code"])
        with self.assertRaisesRegex(ValueError, r"^--set csdm.iters=3: csdm.iters is set twice$"):
            options.parse_sets(["csdm.iters=2", "csdm.iters=3"], ["csdm"])
        with self.assertRaisesRegex(ValueError, "unknown cold-start method 'nope'"):
            options.parse_sets([], ["base", "nope"])
        # The variant is checked as a whole: its stride against its own T.
        self.assertEqual(options.parse_sets(["csdm/a.T=5", "csdm/a.stride=5"], ["csdm/a"]),
                         {"csdm/a": {"T": 5, "stride": 5}})
        with self.assertRaisesRegex(ValueError, r"^csdm/a: stride \(10\) must be at most T \(5\)$"):
            options.parse_sets(["csdm/a.T=5"], ["csdm/a"])


class DeclarationsTest(tf.test.TestCase):

    def test_every_option_is_declared_and_every_default_passes(self):
        for name, cls in methods.METHODS.items():
            with self.subTest(method=name):
                self.assertLessEqual(set(cls.choices) | set(cls.bounds), set(cls.defaults))
                for option, default in cls.defaults.items():
                    self.assertIn(type(default), (bool, int, float, str), option)
                    if isinstance(default, str) and option not in cls.choices:
                        # A free-form string is checked by the method's `check`.
                        with self.assertRaises(ValueError, msg=option):
                            options.validate(cls, {option: "not valid!"})
                    elif not isinstance(default, bool):
                        # A number has a range, a string its allowed values.
                        self.assertIn(option, cls.choices if isinstance(default, str)
                                      else cls.bounds, option)
                self.assertEqual(options.validate(cls, {}), cls.defaults)

    def test_build_checks_python_values(self):
        with self.assertRaisesRegex(ValueError, r"^csdm: train_denoiser takes true or false, "
                                                r"not 'False'$"):
            methods.build("csdm", train_denoiser="False")
        with self.assertRaisesRegex(ValueError, r"^csdm: T takes an integer, not 100.0$"):
            methods.build("csdm", T=100.0)
        with self.assertRaisesRegex(ValueError, r"^csdm: iters takes an integer, not True$"):
            methods.build("csdm", iters=True)
        with self.assertRaisesRegex(ValueError, r"^csdm: stride \(20\) must be at most T \(10\)$"):
            methods.build("csdm", T=10, stride=20)
        method = methods.build("dropoutnet", dropout_prob=1)
        self.assertIs(type(method.options["dropout_prob"]), float)
