"""robots.txt-style patterns (`*`, `$`): the same answers as the obvious regular expression, without its backtracking."""

from __future__ import annotations

import random
import re

import pytest

from crawler.compliance.patterns import matches


def regex_answer(pattern: str, target: str) -> bool:
    anchored = pattern.endswith("$")
    body = re.escape(pattern[:-1] if anchored else pattern).replace(r"\*", ".*")
    return re.match(body + ("$" if anchored else ""), target, re.S) is not None


@pytest.mark.parametrize(
    ("pattern", "target", "expected"),
    [
        ("/a", "/a/b", True), ("/a$", "/a", True), ("/a$", "/a/", False), ("/*.pdf$", "/x/y.pdf", True),
        ("/*.pdf$", "/x/y.pdf?q", False), ("/p*/q*$", "/p1/q", True), ("*", "", True), ("$", "", True),
        ("/a*b*c", "/abc", True), ("/a*b*c", "/acb", False), ("/a$b", "/a$b/c", True),
    ],
)  # fmt: skip
def test_pattern_examples(pattern: str, target: str, expected: bool) -> None:
    assert matches(pattern, target) is expected


def test_agrees_with_the_regular_expression_on_random_cases() -> None:
    """50,000 random patterns over a small alphabet: every answer equals the regex's."""
    rng = random.Random(20261126)
    for _ in range(50_000):
        pattern = "".join(rng.choice("ab/*") for _ in range(rng.randint(0, 7))) + rng.choice(["", "$"])
        target = "".join(rng.choice("ab/") for _ in range(rng.randint(0, 9)))
        assert matches(pattern, target) is regex_answer(pattern, target), (pattern, target)


def test_a_hostile_pattern_does_not_backtrack() -> None:
    """A site's tdmrep.json location like /*a*a*a*a*a*b: the regex takes minutes on a long path; this answers at once."""
    assert matches("/*a*a*a*a*a*b", "/" + "a" * 20_000) is False
    assert matches("/*a*a*a*a*a*b$", "/" + "a" * 20_000 + "b") is True
