import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', (Path(__file__).parent / "litemedsam" / "__init__.py").read_text())[1]

setup(
    name="litemedsam",
    version=VERSION,  # one version: litemedsam.__version__
    description="Fast CPU box-prompted medical image segmentation with LiteMedSAM in ONNX Runtime",
    packages=find_packages(include=["litemedsam", "litemedsam.*"]),
    package_data={"litemedsam.methods": ["router.toml"], "litemedsam.serve.web": ["static/*"]},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.24",
        "onnxruntime>=1.17",
        "opencv-python-headless>=4.8",
        "click>=8.0",
        "nibabel>=5.0",
        "scipy>=1.10",  # the 2025 clicks (litemedsam.methods.refine) and the app's Fill holes
        "tomli>=1.1; python_version < '3.11'",
    ],
    extras_require={
        # pinned: the registry's checksums are those of exports made with these versions
        "export": ["torch==2.13.0", "onnx==1.23.2"],
        "eval": ["surface-distance==0.1"],
        "io": ["SimpleITK>=2.3"],
        "cluster": ["distributed>=2024.1"],
        # blosc2: the nnInteractive protocol; its last release for Python 3.9 (2.5.1) is built against NumPy 1
        "serve": ["starlette>=0.37", "uvicorn>=0.29", "blosc2>=2.5", "numpy<2; python_version < '3.10'"],
        "test": ["pytest>=7", "surface-distance==0.1", "SimpleITK>=2.3", "pydicom>=2.4",
                 "distributed>=2024.1", "starlette>=0.37", "uvicorn>=0.29", "blosc2>=2.5", "httpx2>=2.0", "selenium>=4.20",
                 "numpy<2; python_version < '3.10'", "httpx>=0.24; python_version < '3.10'",  # Starlette's test client
                 "nninteractive-client==2.6.0; python_version >= '3.10'",  # the client needs 3.10
                 "ruff>=0.5", "mypy>=1.10"],  # the client 3D Slicer and napari use, as it is
    },
    entry_points={"console_scripts": ["litemedsam=litemedsam.cli:main"]},
)
