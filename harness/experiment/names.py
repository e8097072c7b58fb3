"""Names a user gives that become folders or table keys: experiment names, recipe and task names.

An experiment name is one plain folder under the results root; a recipe or task name labels every table
and figure. Either must read as what it is: no control characters (a newline makes a folder no shell
lists plainly), no invisible or bidirectional formatting characters (two recipes that differ only by a
zero-width space or a right-to-left mark would look identical in every table).
"""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 100  # an experiment folder name; the OS allows 255, and `compare-A-vs-B` joins two of them
MAX_LABEL_CHARS = 100  # a recipe or task name
# Unicode categories never allowed: control (Cc), format (Cf: zero-width, bidirectional marks and overrides),
# surrogates (Cs), private use (Co), unassigned (Cn), line and paragraph separators (Zl, Zp).
_HIDDEN = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def hidden_characters(text: str) -> list[str]:
    """The characters of `text` that do not show as themselves (U+XXXX each), in order."""
    found = [c for c in text if unicodedata.category(c) in _HIDDEN or (c.isspace() and c != " ")]
    return [f"U+{ord(c):04X} ({unicodedata.name(c, 'control')})" for c in dict.fromkeys(found)]


def label_problem(name: object, limit: int = MAX_LABEL_CHARS) -> str | None:
    """Why `name` cannot label a recipe or a task (None when it can)."""
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty string"
    hidden = hidden_characters(name)
    if hidden:
        return f"holds invisible or control character(s) {', '.join(hidden[:3])}; type the name plainly"
    if name != name.strip():
        return "starts or ends with a space"
    if len(name) > limit:
        return f"is {len(name)} characters long; at most {limit}"
    return None


def folder_name_problem(name: object) -> str | None:
    """Why `name` cannot be one plain folder under the results root (None when it can)."""
    problem = label_problem(name, limit=10**9)
    if problem is not None:
        return problem
    assert isinstance(name, str)
    if name in (".", "..") or name.startswith("."):
        return "must not start with '.'"
    if any(sep in name for sep in ("/", "\\")):
        return "must not hold '/' or '\\' (one folder under the results root)"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long; at most {MAX_NAME_BYTES} (a folder name)"
    return None
