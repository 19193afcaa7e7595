"""scripts/setup_env.sh off the happy path: each missing precondition stops it with one line that
names what is missing and the override, before it deletes or downloads anything.

Every case runs the real script with VENV in a temporary folder (never the project's .venv) and
fails before a virtual environment is created, so the suite stays fast and offline.
"""
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import unittest

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "setup_env.sh")
# A plain CPython 3.11 (the interpreter this venv was made from), run without the private runtime.
REAL_PYTHON = sys._base_executable  # pylint: disable=protected-access

# Fake interpreters: a real CPython 3.11 that answers `-c CODE` as another Python would.
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
needs_apt = unittest.skipUnless(shutil.which("apt-get") and shutil.which("apt-config")
                                and os.path.exists(KEYRING), f"needs apt-get, apt-config and {KEYRING}")
FAKE_PYTHON_39 = """import sys
sys.version_info = (3, 9, 18, "final", 0)
exec(sys.argv[2]) if sys.argv[1:2] == ["-c"] else sys.exit("this fake python runs -c only")
"""
FAKE_PYTHON_WITHOUT_VENV = """import sys
sys.modules["venv"] = sys.modules["ensurepip"] = None  # as Debian's python3.11 without python3.11-venv
exec(sys.argv[2]) if sys.argv[1:2] == ["-c"] else sys.exit("this fake python runs -c only")
"""


class SetupScriptTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.create_tempdir().full_path
        self.venv = os.path.join(self.tmp, "venv")

    def fake_python(self, name, source):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(f"#!{REAL_PYTHON}\n{source}")
        os.chmod(path, 0o755)
        return path

    def path_without(self, *names):
        """A PATH folder with every tool of /usr/bin except `names` (and no pyenv shims)."""
        folder = os.path.join(self.tmp, "bin")
        os.makedirs(folder)
        for tool in os.listdir("/usr/bin"):
            if not any(tool == n or (n.endswith("*") and tool.startswith(n[:-1])) for n in names):
                os.symlink(os.path.join("/usr/bin", tool), os.path.join(folder, tool))
        return folder

    def existing_venv(self):
        """A virtual environment from an earlier set-up (older stamp), which must survive."""
        os.makedirs(os.path.join(self.venv, "bin"))
        for name in ("pyvenv.cfg", "bin/marker"):
            with open(os.path.join(self.venv, name), "w") as f:
                f.write("kept\n")

    def run_setup(self, **env):
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHON", "VENV", "APT_CONFIG") and not k.startswith("COLDSTART_")}
        environ.update({"VENV": self.venv, **env})
        return subprocess.run(["/bin/bash", SCRIPT], env=environ, capture_output=True, text=True,
                              timeout=120, check=False)

    def assert_one_line_failure(self, result, pattern):
        lines = result.stderr.splitlines()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertLen(lines, 1, result.stderr)
        self.assertRegex(lines[0], "^setup: " + pattern)

    def test_missing_interpreter(self):
        result = self.run_setup(PYTHON="/nonexistent/python3.11")
        self.assert_one_line_failure(result, re.escape(
            "PYTHON=/nonexistent/python3.11 not found; the stack needs CPython 3.11 (TFX 1.21 "
            "publishes wheels only for it): set PYTHON=/path/to/python3.11"))
        self.assertFalse(os.path.exists(self.venv))

    def test_no_python311_on_path(self):
        result = self.run_setup(PATH=self.path_without("python*"))
        self.assert_one_line_failure(result, re.escape(
            "no python3.11 found on PATH (python3 is absent); the stack needs CPython 3.11"))
        self.assertIn("set PYTHON=/path/to/python3.11", result.stderr)
        self.assertFalse(os.path.exists(self.venv))

    def test_other_python_version_leaves_the_existing_venv_alone(self):
        self.existing_venv()
        python = self.fake_python("python3.9", FAKE_PYTHON_39)
        result = self.run_setup(PYTHON=python)
        self.assert_one_line_failure(result, re.escape(
            f"PYTHON={python} is CPython 3.9; the stack needs CPython 3.11"))
        self.assertTrue(os.path.exists(os.path.join(self.venv, "bin", "marker")))

    def test_python_without_venv_module(self):
        python = self.fake_python("python3.11", FAKE_PYTHON_WITHOUT_VENV)
        result = self.run_setup(PYTHON=python)
        self.assert_one_line_failure(result, re.escape(
            f"PYTHON={python} has no working venv/ensurepip module (Debian: apt-get install "
            "python3.11-venv)"))
        self.assertFalse(os.path.exists(self.venv))

    def test_linked_venv_is_never_rebuilt(self):
        """The worktrees' .venv links to a shared one: setup must not replace or empty it."""
        target = os.path.join(self.tmp, "shared-venv")
        os.makedirs(target)
        with open(os.path.join(target, "pyvenv.cfg"), "w") as f:
            f.write("kept\n")
        os.symlink(target, self.venv)
        for venv in (self.venv, self.venv + "/"):
            result = self.run_setup(VENV=venv, PYTHON=REAL_PYTHON)
            self.assert_one_line_failure(result, re.escape(
                f"VENV={self.venv} is a symbolic link (to {target}); setup never rebuilds a "
                "linked environment"))
            self.assertEqual(os.readlink(self.venv), target)
            self.assertEqual(os.listdir(target), ["pyvenv.cfg"])

    def test_folder_that_is_not_a_venv_is_never_deleted(self):
        os.makedirs(self.venv)
        with open(os.path.join(self.venv, "notes.txt"), "w") as f:
            f.write("mine\n")
        result = self.run_setup(PYTHON=REAL_PYTHON)
        self.assert_one_line_failure(result, re.escape(
            f"VENV={self.venv} exists and is not a virtual environment (no pyvenv.cfg)"))
        self.assertEqual(os.listdir(self.venv), ["notes.txt"])

    def test_private_runtime_without_apt(self):
        result = self.run_setup(PYTHON=REAL_PYTHON, COLDSTART_FORCE_RUNTIME="1",
                                PATH=self.path_without("apt-get", "apt-config", "dpkg"))
        self.assert_one_line_failure(result, "the host C runtime is older than glibc 2.38 / GCC 13 "
                                             "libstdc\\+\\+, so a private Debian 13 runtime is "
                                             "needed, which needs apt-get .*COLDSTART_NO_RUNTIME=1")
        self.assertFalse(os.path.exists(self.venv))

    @needs_apt
    def test_private_runtime_without_a_debian_mirror(self):
        apt_conf = os.path.join(self.tmp, "apt.conf")
        with open(apt_conf, "w") as f:  # apt's source lists: none
            f.write(f'Dir::Etc::sourcelist "{self.tmp}/none.list";\n'
                    f'Dir::Etc::sourceparts "{self.tmp}/none.d";\n')
        result = self.run_setup(PYTHON=REAL_PYTHON, COLDSTART_FORCE_RUNTIME="1", APT_CONFIG=apt_conf)
        self.assert_one_line_failure(result, ".*apt's sources name no bookworm mirror: set "
                                             "COLDSTART_DEBIAN_MIRROR=.*COLDSTART_NO_RUNTIME=1")
        self.assertFalse(os.path.exists(self.venv))

    @needs_apt
    def test_runtime_download_failure_leaves_the_existing_venv_alone(self):
        self.existing_venv()
        apt_conf = os.path.join(self.tmp, "apt.conf")
        with open(apt_conf, "w") as f:
            f.write('Acquire::Retries "0";\n')
        mirror = "http://127.0.0.1:9/debian"  # the discard port: connection refused at once
        result = self.run_setup(PYTHON=REAL_PYTHON, COLDSTART_FORCE_RUNTIME="1", APT_CONFIG=apt_conf,
                                COLDSTART_DEBIAN_MIRROR=mirror)
        self.assertEqual(result.returncode, 1, result.stderr)
        # apt's own errors come first; the script's verdict is the last line.
        self.assertEqual(result.stderr.splitlines()[-1], (
            f"setup: downloading the Debian 13 runtime (libc6, libstdc++6, libgcc-s1) from {mirror} "
            "failed (apt-get, output above): check the mirror, set COLDSTART_DEBIAN_MIRROR=URI, or "
            "set COLDSTART_NO_RUNTIME=1 on a host with glibc >= 2.38"))
        self.assertRegex("\n".join(result.stderr.splitlines()[:-1]), "Failed to fetch http://127.0.0.1:9/")
        self.assertTrue(os.path.exists(os.path.join(self.venv, "bin", "marker")))

    def test_pip_and_wheel_are_pinned_and_installed(self):
        with open(os.path.join(ROOT, "requirements.lock")) as f:
            pins = dict(line.strip().split("==") for line in f if re.match(r"(pip|wheel)==", line))
        self.assertEqual(sorted(pins), ["pip", "wheel"])
        # This suite runs in a venv that setup_env.sh made: it holds exactly the pinned versions.
        self.assertEqual({name: importlib.metadata.version(name) for name in pins}, pins)

    def test_console_scripts_name_an_interpreter_that_exists(self):
        """The venv that setup_env.sh made for this suite: the private-runtime wrapper must leave
        every console script's shebang (python3 or python3.11, as pip ran) pointing somewhere."""
        bin_dir = os.path.join(sys.prefix, "bin")
        broken = []
        for name in sorted(os.listdir(bin_dir)):
            path = os.path.join(bin_dir, name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                first = f.readline()
            if first.startswith(b"#!/"):
                interpreter = first[2:].split()[0].decode()
                if not os.path.exists(interpreter):
                    broken.append(f"{name}: {interpreter}")
        self.assertEqual(broken, [])
        self.assertTrue(os.path.isfile(os.path.join(bin_dir, "coldstart")))
