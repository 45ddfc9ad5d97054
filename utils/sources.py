"""Where data comes from: a URL fetched once, a JSON file given as a path or a URL, a Hugging Face Hub dataset.

Introduced in notebook 02 (the Alpaca JSON by URL, Dolly and OpenAssistant from the Hub); notebooks 03–07 load
their data through the same functions. Each one fails fast with a plain message when the network is missing,
and serves the rehearsal fixtures of :mod:`utils.rehearsal_data` when ``COURSE_REHEARSAL=1``.
"""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from .env import env_flag, rehearsal
from .models import HubUnavailableError, hub_reachable
from .rehearsal_data import hub_fixture, url_fixture


def download(url: str, target: str | Path, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``target`` once (an existing file is reused) and return the path.

    Fails with a clear message after ``timeout`` seconds without an answer, instead of hanging;
    a partial file is never left behind. Rehearsal (``COURSE_REHEARSAL=1``): the course's one URL maps
    to its shipped sample cycled to the real record count (:func:`utils.rehearsal_data.url_fixture`; returned
    from ``build/rehearsal_data/urls/``, ``target`` is left alone); any other URL is an error.
    """
    if rehearsal():
        return url_fixture(url)
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"Could not download {url} ({type(err).__name__}: {err}). Full mode needs internet "
                           "access: connect, or set COURSE_FAST=1 to use the shipped samples.") from err
    partial.replace(target)
    return target


def load_json(source: str | Path, download_to: str | Path) -> Any:
    """Parse a JSON file given as a local path, or as an ``https://`` URL fetched once into
    ``download_to`` (:func:`download`: a clear error with a timeout when offline; in rehearsal the
    shipped stand-in)."""
    if str(source).startswith(("https://", "http://")):
        source = download(str(source), download_to)
    return json.loads(Path(source).read_text(encoding="utf-8"))


def load_hub_dataset(path: str, split: str, *, data_dir: str | None = None):
    """A split of a Hugging Face Hub dataset as a ``datasets.Dataset`` (``split`` may slice: ``"train[:4600]"``).

    Full mode: asks whether the Hub is reachable first and fails within seconds with a plain message
    (instead of the datasets client's retries), then ``datasets.load_dataset(path, data_dir=data_dir, split=split)``.
    Rehearsal (``COURSE_REHEARSAL=1``): a local fixture with exactly the Hub dataset's columns, feature types
    and row counts, built from the real samples in ``data/realdata/`` (:func:`utils.rehearsal_data.hub_fixture`).

    Raises:
        utils.models.HubUnavailableError: full mode and the Hub cannot be reached (or offline mode is on).
    """
    if rehearsal():
        return hub_fixture(path, split, data_dir)
    if env_flag("HF_DATASETS_OFFLINE") or not hub_reachable():
        raise HubUnavailableError(
            f"The dataset {path!r} comes from the Hugging Face Hub, which cannot be reached from here "
            "(or HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set). Connect to the internet, or set COURSE_FAST=1 "
            "to run the course offline on the shipped samples.")
    from datasets import load_dataset
    return load_dataset(path, data_dir=data_dir, split=split)
