"""coldstart: cold-start CTR prediction as a TFX pipeline."""
import setuptools

# Direct dependencies; every transitive version is pinned in requirements.lock (used as pip -c).
INSTALL_REQUIRES = [
    "tfx[kfp]==1.21.0",
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-recommenders==0.7.7",
    "keras-tuner==1.4.8",
    "tensorboard==2.21.0",
    "apache-beam[gcp]",
    "tensorflow-transform",
    "scikit-learn",
    "matplotlib",
]

setuptools.setup(
    name="coldstart",
    version="0.1.0",
    description="Cold-start CTR prediction (CSDM and baselines) as a TFX pipeline",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["pipeline*", "components*", "trainer*", "schemas*"]),
    package_data={"schemas": ["*/*.pbtxt", "*/*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": ["pytest", "pytest-xdist"]},
    entry_points={"console_scripts": ["coldstart=pipeline.cli:main"]},
)
