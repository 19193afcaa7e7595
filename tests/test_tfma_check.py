"""components.tfma_check: with one seed the Evaluator computes only the per-seed slices, and the
cross-check still compares every (method, seed, phase) and reports the pooled AUC per phase."""
import tensorflow as tf
from tfx import v1 as tfx  # noqa: F401  (tensorflow_model_analysis needs tfx imported first)

from components import tfma_check
from trainer import protocols

ITEM_PHASES = protocols.build("item_frequency")


class TfmaCheckTest(tf.test.TestCase):

    def test_one_seed_computes_only_per_seed_slices(self):
        one = tfma_check.eval_config(1)
        self.assertEqual([list(s.feature_keys) for s in one.slicing_specs],
                         [["method", "seed", "phase"]])
        two = tfma_check.eval_config(2)
        self.assertEqual([list(s.feature_keys) for s in two.slicing_specs],
                         [["method", "phase"], ["method", "seed", "phase"]])

    def test_compare_with_one_seed(self):
        tfma_auc = {("base", "0", "cold"): 0.70, ("base", "0", "warm_a"): 0.72,
                    ("csdm", "0", "cold"): 0.75}
        ours = {"base": {"0": {"cold": {"auc": 0.7001}, "warm_a": {"auc": 0.7195}},
                         "1": {"cold": {"auc": 0.5}}},
                "csdm": {"0": {"cold": {"auc": 0.75}}}}
        result = tfma_check.compare(tfma_auc, ours, ITEM_PHASES)
        self.assertAllClose(result["max_abs_auc_diff"], 0.0005)  # |0.72 - 0.7195|
        self.assertEqual(result["seeds"], ["0"])
        self.assertEqual(result["pooled_auc"], {"base": {"cold": 0.70, "warm_a": 0.72},
                                                "csdm": {"cold": 0.75}})

    def test_compare_with_two_seeds_reads_the_pooled_slices(self):
        tfma_auc = {("base", "0", "cold"): 0.70, ("base", "1", "cold"): 0.60,
                    ("base", "cold"): 0.66}
        ours = {"base": {"0": {"cold": {"auc": 0.70}}, "1": {"cold": {"auc": 0.61}}}}
        result = tfma_check.compare(tfma_auc, ours, ITEM_PHASES)
        self.assertAllClose(result["max_abs_auc_diff"], 0.01)
        self.assertEqual(result["seeds"], ["0", "1"])
        self.assertEqual(result["pooled_auc"], {"base": {"cold": 0.66}})

    def test_slice_feature_crossed_and_compared_under_the_report_names(self):
        config = tfma_check.eval_config(1, ("user_group",))
        self.assertEqual([list(s.feature_keys) for s in config.slicing_specs],
                         [["method", "seed", "phase"], ["method", "seed", "phase", "user_group"]])
        # leave_last_out: one stage, "overall"; TFMA's (method, seed, stage[, group]) slices are
        # the report's overall and group columns.
        tfma_auc = {("base", "0", "overall"): 0.61, ("base", "0", "overall", "non_active"): 0.58,
                    ("base", "0", "overall", "highly_active"): 0.70}
        ours = {"base": {"0": {"overall": {"auc": 0.6102}, "non_active": {"auc": 0.5790},
                               "highly_active": {"auc": 0.70}}}}
        result = tfma_check.compare(tfma_auc, ours, protocols.build("leave_last_out"))
        self.assertAllClose(result["max_abs_auc_diff"], 0.001)  # |0.58 - 0.5790|
        self.assertEqual(result["pooled_auc"], {"base": {"overall": 0.61, "non_active": 0.58,
                                                         "highly_active": 0.70}})
