"""The model zoo: cards (``zoo.cards``), loaders (``zoo.models``), decoding (``zoo.video``), the embedded
architectures and SynthActions-10 (``zoo.synthetic``). Training lives apart, in ``zoo.training``.

``ASSETS`` is the folder of the embedded files (weights, example clips, label files, the Learn text): ``assets/``
beside the packages in a checkout, the installed copy (package data ``zoo/assets``) after ``pip install .``.
"""
from __future__ import annotations

from pathlib import Path


def _assets() -> Path:
    here = Path(__file__).resolve().parent
    for folder in (here / "assets", here.parent / "assets"):
        if (folder / "models").is_dir():
            return folder
    raise FileNotFoundError(f"the embedded assets are missing: neither {here / 'assets'} nor {here.parent / 'assets'} "
                            f"holds them; reinstall the project")


ASSETS = _assets()
