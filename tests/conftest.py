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


def pytest_sessionfinish(session, exitstatus):
    # A run in which no test ran fails like one that collected none (exit 5), so that CI
    # (.ci/run -> make test) cannot pass when every test was skipped, e.g. for a missing input.
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller decides
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus == 0 and reporter is not None and not reporter.stats.get("passed"):
        reporter.write_sep("!", f"no test ran ({len(reporter.stats.get('skipped', []))} skipped): "
                            "exit status 5", red=True)
        session.exitstatus = 5
