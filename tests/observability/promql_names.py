"""Extract metric names from PromQL well enough to check them against ``metrics/definitions.py``.

Not a PromQL parser: it removes the parts that contain identifiers which are not metric names
(string literals, label matchers, ranges, grouping clauses, Grafana variables, function calls'
names, keywords) and returns what is left.  Good enough for the expressions we write, and strict in
the direction that matters: an unknown word shows up as an unknown metric and fails the test.
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
     "group_right", "inf", "nan", "atan2", "start", "end"}
)  # fmt: skip

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+")
_DURATION = re.compile(r"\b\d+(?:ms|s|m|h|d|w|y)\b")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,)?\s*\w+\s*\)\s*$"
)


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (or a Grafana ``label_values(...)`` query)."""
    grafana = _LABEL_VALUES.match(expr)
    if grafana:
        return {grafana.group(1)} if grafana.group(1) else set()
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VAR.sub(" ", text)
    while True:  # matchers cannot nest, but ranges can hold subqueries: strip innermost first
        stripped = _RANGE.sub(" ", _MATCHERS.sub(" ", text))
        if stripped == text:
            break
        text = stripped
    text = _GROUPING.sub(" ", text)
    text = _DURATION.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):  # function or aggregation operator
            continue
        if word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names
