"""Reconcile token classes so that no token is counted twice or dropped.

The record follows the OTel rule: ``input_tokens`` includes cache reads and
writes, ``output_tokens`` includes reasoning. Most emitters follow it; some
(Anthropic's raw usage, Gemini's thoughts) report the sub-classes *beside*
the parent instead. Evidence that an emitter excluded them:

* the sub-classes exceed the parent (cache 500 > input 100): impossible if inside;
* the reported total equals parent + other class + sub-classes, not parent +
  other class.

Then the sub-classes are added to the parent and ``token_notes`` says so
(``cache_added_to_input``, ``reasoning_added_to_output``). A total that matches
neither reading is kept in the attributes JSON with the note ``total_mismatch``.
"""
from __future__ import annotations


def reconcile(rec: dict, total, notes: list) -> bool:
    """Fix ``rec``'s token columns in place, appending to ``notes``.

    Returns True when ``total`` disagrees with the counts (the caller keeps it).
    """
    inp = rec["input_tokens"]
    out = rec["output_tokens"]
    cache = (rec["cache_read_tokens"] or 0) + (rec["cache_write_tokens"] or 0)
    reasoning = rec["reasoning_tokens"] or 0
    reported_sum = (inp or 0) + (out or 0)
    if inp is not None and cache and (cache > inp or total == reported_sum + cache):
        inp = rec["input_tokens"] = inp + cache
        notes.append("cache_added_to_input")
    if out is not None and reasoning and (reasoning > out or total == (inp or 0) + out + reasoning):
        out = rec["output_tokens"] = out + reasoning
        notes.append("reasoning_added_to_output")
    if total is None or (inp is None and out is None):
        return False
    if total in ((inp or 0) + (out or 0), reported_sum):
        return False
    notes.append("total_mismatch")
    return True


def out_of_range(rec: dict, columns: tuple, total, max_tokens: int):
    """A message naming the first token count outside 0..max_tokens, else None."""
    for column in columns:
        count = rec[column]
        if count is not None and not 0 <= count <= max_tokens:
            return f"{column} = {count} is outside 0..{max_tokens}"
    if total is not None and not 0 <= total <= max_tokens:
        return f"total tokens = {total} is outside 0..{max_tokens}"
    return None
