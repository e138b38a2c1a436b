"""Packaging for jojogan.

The repository keeps the design card's top-level folders (``jojogan/``, ``stylegan2/``, ``inversion/``,
``op/``) but installs them as sub-packages of one import namespace, so nothing generic such as ``op``
lands at the top of site-packages.
"""

from setuptools import setup

PACKAGE_DIR = {
    "jojogan": "jojogan",
    "jojogan.stylegan2": "stylegan2",
    "jojogan.inversion": "inversion",
    "jojogan.op": "op",
    "jojogan.cli": "jojogan/cli",
    "jojogan.identity": "jojogan/identity",
    "jojogan.cleanup": "jojogan/cleanup",
    "jojogan.batch": "jojogan/batch",
    "jojogan.ui": "jojogan/ui",
    "jojogan.video": "jojogan/video",
}

setup(
    packages=list(PACKAGE_DIR),
    package_dir=PACKAGE_DIR,
    package_data={"jojogan.op": ["csrc/*.cu", "csrc/*.cpp", "csrc/*.h"]},
)
