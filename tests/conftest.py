import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items):
    # tf.test.TestCase inherits a deprecated `test_session` context manager that is not a test.
    items[:] = [item for item in items if item.name != "test_session"]


def pytest_configure(config):
    # tf.test.TestCase temp dirs read absl flags, which pytest never parses.
    from absl import flags  # pylint: disable=import-outside-toplevel
    flags.FLAGS.mark_as_parsed()
