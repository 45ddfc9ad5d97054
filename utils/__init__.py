"""Shared helpers for the instruction-tuning course notebooks.

Each module holds one concern and plain functions; the notebook that introduces it in brackets.
Imports run one way, from the bottom up: env, memory, masking, loss, schema → models, oasst, chat,
training, rehearsal, rehearsal_data → data, sources → checks.

- ``env``       (01) fast/full/rehearsal mode, device and precision, seeding, versions, ``REPO_ROOT``
- ``models``    (01) the offline tiny GPT-2 (``TINY_GPT2``, ``tiny_model``) or the real Hub model
- ``masking``   (01) labels with -100 outside the response, a padding collate that keeps EOS, packing
- ``loss``      (01) masked negative log-likelihood, perplexity; (07) Bradley–Terry, DPO, PPO, KL, GAE
- ``training``  (01) the minimal loop; (04–06) the full loop, gradient statistics, FLOPs
- ``plotting``  (01) loss curves, next-token bar charts, the mask viewer
- ``schema``    (02) the conversation record, its one validator, ``DataFormatError``
- ``data``      (02) real dataset formats → records; preference pairs
- ``oasst``     (02) OpenAssistant message trees → conversation threads
- ``sources``   (02) URLs fetched once, JSON by path or URL, Hub datasets
- ``quality``   (02) exact and near duplicates (MinHash + LSH), deterministic splits
- ``chat``      (02–03) prompt templates (Alpaca, GPT-2 ``[BOS, I, SEP, Y, EOS]``), ChatML, render, chat
- ``memory``    (05) model shapes, parameter counts, the memory predictor, measurers
- ``checks``    (01–07) exercise checkers with specific feedback, one module per notebook
- ``rehearsal`` (``make rehearse``) the full configuration offline: capped loops, FLOP counting, T4 projection
- ``rehearsal_data`` (``make rehearse``) Hub-shaped dataset fixtures and the URL stand-in

Submodules are imported explicitly (``from utils.masking import build_labels``) so that
importing ``utils`` itself stays cheap.
"""
