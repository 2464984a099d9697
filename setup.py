"""Packaging for openmm_mlcg (learned time-integrated coarse-grained MD inside OpenMM)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "openmm_mlcg" / "_version.py").read_text()).group(1)

setup(
    name="openmm_mlcg",
    version=version,
    description="Learned, time-integrated coarse-grained MD (multi-scale GNNs) as a drop-in OpenMM integrator",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["openmm_mlcg", "openmm_mlcg.*"]),
    package_data={"openmm_mlcg": ["systems/data/*.json", "systems/data/*.xml"]},
    install_requires=[
        "openmm>=8.1",
        "torch>=2.3",
        "vesin-torch>=0.6",
        "pymetis>=2023.1",
        "mdtraj>=1.10",
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "filelock>=3.13",
        "dask[distributed]>=2024.1",
    ],
    extras_require={
        "systems": ["rdkit>=2023.9", "packmol>=20", "openmmforcefields>=0.13"],
        "test": ["pytest>=7", "rdkit>=2023.9", "packmol>=20", "openmmforcefields>=0.13"],
        "docs": ["mkdocs>=1.5", "mkdocs-material>=9"],
    },
    entry_points={"console_scripts": ["openmm-mlcg=openmm_mlcg.app.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Chemistry",
        "Topic :: Scientific/Engineering :: Physics",
    ],
)
