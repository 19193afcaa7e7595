"""pipeline.quiet: library output goes to OUT/logs/pipeline.log, progress and errors to the terminal."""
import contextlib
import io
import logging
import os
import re
import warnings

import tensorflow as tf
from absl import logging as absl_logging

from pipeline import quiet


class QuietTest(tf.test.TestCase):

    def _log_text(self, out):
        with open(os.path.join(out, quiet.LOG_FILE)) as f:
            return f.read()

    def test_library_output_goes_to_the_log_and_progress_to_the_terminal(self):
        out = self.create_tempdir().full_path
        terminal = io.StringIO()
        handlers = list(logging.getLogger().handlers)
        with contextlib.redirect_stderr(terminal):
            with quiet.logs_to_file(out) as path:
                os.write(2, b"C++ style line on descriptor 2\n")
                logging.getLogger("tensorflow").warning("a TensorFlow warning")
                logging.getLogger("apache_beam").warning("a Beam warning")
                absl_logging.warning("an absl warning")
                with warnings.catch_warnings():
                    warnings.simplefilter("always")
                    warnings.warn("a Python warning")
                absl_logging.info("Component Transform is running.")
                absl_logging.info("Component Transform is finished.")
                live = re.search(r"to (\S+) until then", terminal.getvalue()).group(1)
                with open(live, encoding="utf-8") as f:  # readable while the run goes on
                    self.assertIn("a Beam warning", f.read())
        self.assertFalse(os.path.exists(live))
        self.assertEqual(path, os.path.join(out, "logs", "pipeline.log"))
        log = self._log_text(out)
        for text in ("C++ style line on descriptor 2", "a TensorFlow warning", "a Beam warning",
                     "an absl warning", "a Python warning"):
            self.assertIn(text, log)
            self.assertNotIn(text, terminal.getvalue())
        lines = terminal.getvalue().splitlines()
        self.assertLen(lines, 3)
        self.assertIn(f"library logs and warnings go to {path} at the end of the run, to /", lines[0])
        self.assertRegex(lines[1], r"^\[ *\d+\.\ds\] Transform \.\.\.$")
        self.assertRegex(lines[2], r"^\[ *\d+\.\ds\] Transform done \(\d+\.\d s\)$")
        self.assertEqual(logging.getLogger().handlers, handlers)  # restored

    def test_an_error_names_the_log_and_propagates(self):
        out = self.create_tempdir().full_path
        terminal = io.StringIO()
        with contextlib.redirect_stderr(terminal):
            with self.assertRaisesRegex(RuntimeError, "boom"):
                with quiet.logs_to_file(out):
                    raise RuntimeError("boom")
        self.assertIn(f"the full log of this run is in {os.path.join(out, quiet.LOG_FILE)}",
                      terminal.getvalue())

    def test_verbose_writes_no_log(self):
        out = self.create_tempdir().full_path
        terminal = io.StringIO()
        with contextlib.redirect_stderr(terminal):
            with quiet.logs_to_file(out, verbose=True) as path:
                absl_logging.info("Component Trainer is running.")
        self.assertIsNone(path)
        self.assertFalse(os.path.exists(os.path.join(out, "logs")))
        self.assertIn("Trainer ...", terminal.getvalue())

    def test_progress_survives_a_library_switching_to_the_absl_handler(self):
        # TFX's Transform executor turns absl's handler on mid-run, which resets the logging level
        # from absl's verbosity flag (WARNING by default); progress lines must keep coming.
        out = self.create_tempdir().full_path
        terminal = io.StringIO()
        with contextlib.redirect_stderr(terminal):
            with quiet.logs_to_file(out):
                absl_logging.info("Component Transform is running.")
                absl_logging.use_absl_handler()
                absl_logging.info("Component Transform is finished.")
                absl_logging.info("Component Trainer is running.")
        lines = terminal.getvalue().splitlines()[1:]
        self.assertLen(lines, 3)
        self.assertRegex(lines[2], r"^\[ *\d+\.\ds\] Trainer \.\.\.$")
        self.assertNotIn(absl_logging.get_absl_handler(), logging.getLogger().handlers)
