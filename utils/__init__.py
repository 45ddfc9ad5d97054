"""Shared helpers for the instruction-tuning course notebooks.

Each module holds one concern and plain functions:

- ``env``      fast/full mode, Colab detection, device and precision, seeding, versions
- ``models``   the offline tiny GPT-2 (fast mode) or the real Hub model (full mode)
- ``data``     real dataset formats → one conversation schema; filters, dedup, splits
- ``chat``     prompt templates (Alpaca, GPT-2 ``[BOS, I, SEP, Y, EOS]``), the ChatML template, render, chat
- ``masking``  labels with -100 outside the response, a padding collate that keeps EOS
- ``loss``     masked negative log-likelihood (mean or sum), token counts, perplexity
- ``training`` the training loops (notebook 01's minimal one; the full one of 04–06)
- ``plotting`` loss curves, next-token bar charts, the mask viewer
- ``checks``   exercise checkers with specific feedback
- ``memory``   parameter counts, the memory predictor of a training step, measurers, the fit check

Submodules are imported explicitly (``from utils.masking import build_labels``) so that
importing ``utils`` itself stays cheap.
"""
