"""How every checker answers: one verdict, one protocol for "not attempted yet".

A checker is a pair: ``<name>_problems(...)`` returns the list of problems found (empty = correct; the
tests call it), and ``check_<name>(...)`` prints the verdict for the learner and returns True/False
through :func:`verdict`. An answer that is still the placeholder — ``None``, or a function that raises
``NotImplementedError`` — makes ``<name>_problems`` raise :class:`NotAttempted`, and :func:`verdict`
prints "⏳ Not attempted yet: …" with the hint, never a list of problems.
"""
from __future__ import annotations

from collections.abc import Callable


class NotAttempted(Exception):
    """The learner's answer is still the placeholder; the message is the hint shown to them."""


def require_answer(answer, hint: str) -> None:
    """Raise :class:`NotAttempted` with ``hint`` while ``answer`` is still ``None``."""
    if answer is None:
        raise NotAttempted(hint)


def not_written(stub_error: NotImplementedError) -> NotAttempted:
    """The "not attempted" verdict for a function that is still the stub: what to do next, and the stub's nudge."""
    return NotAttempted("your function is not implemented yet — replace the `raise NotImplementedError(...)` line "
                        "with your code and run the cell again (graded hints in the collapsed cells below)"
                        + (f". The idea: {stub_error}" if str(stub_error) else ""))


def attempt(fn, *args, **kwargs):
    """Call the learner's function; returns ``(result, problem)`` — problem names what went wrong.

    ``NotImplementedError`` (the stub left in place) raises :class:`NotAttempted` carrying the stub's hint.
    """
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError as e:
        raise not_written(e) from None
    except Exception as e:  # noqa: BLE001 — report any error as feedback, not a traceback
        return None, f"calling it raised {type(e).__name__}: {e}"


def verdict(problems_of: Callable[..., list[str]], *args, success: str | Callable[[], str]) -> bool:
    """Print the verdict on ``problems_of(*args)``: not attempted yet, each problem on its own line, or
    ``success`` (a string, or a function that makes it once the answer is known to be right)."""
    try:
        problems = problems_of(*args)
    except NotAttempted as hint:
        print(f"⏳ Not attempted yet: {hint}")
        return False
    if problems:
        print("❌ Not yet:")
        for p in problems:
            print("   -", p)
        return False
    print(success() if callable(success) else success)
    return True


def yours_or_reference(yours: Callable, reference: Callable, name: str, *probe_args, **probe_kwargs) -> Callable:
    """The function the cells after an exercise should use: the learner's own — or, only while it is still the stub
    (it raises ``NotImplementedError`` on ``probe_args``), the course's reference, saying so. A wrong answer is
    used as it is: its consequences are part of the lesson."""
    try:
        yours(*probe_args, **probe_kwargs)
    except NotImplementedError:
        print(f"⏳ `{name}` is not written yet: the cells below use the course's reference instead.")
        return reference
    except Exception:  # noqa: BLE001 — a broken answer still gets used; its checker has said what is wrong
        pass
    print(f"Using your `{name}`.")
    return yours


def as_list(x) -> list[int]:
    """A tensor, array or sequence of ints as a plain list of ints."""
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def spans(positions: list[int]) -> str:
    """[3, 4, 5, 9] -> '3–5, 9'"""
    out, start = [], None
    for i, p in enumerate(positions):
        if start is None:
            start = p
        if i + 1 == len(positions) or positions[i + 1] != p + 1:
            out.append(f"{start}" if start == p else f"{start}–{p}")
            start = None
    return ", ".join(out)
