"""The rule tests' one shape: each rule holds on the project, and a broken copy of it is caught."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest


def broken(rule: Callable, rel: str, old: str, new: str, expected: str):
    """A case: ``rule`` on a copy of powerbi/ whose ``rel`` has ``old`` (which must occur)
    replaced by ``new`` reports a problem containing ``expected``."""
    return pytest.param(rule, {rel: (old, new)}, expected, id=rule.__name__)


def rule_tests(rule_list: Sequence[Callable], cases: Sequence) -> tuple[Callable, Callable]:
    """``test_rule_holds`` (each rule finds nothing on the project) and
    ``test_rule_catches_a_broken_copy`` (each :func:`broken` case), for a test module to bind."""

    @pytest.mark.parametrize("rule", rule_list, ids=lambda r: r.__name__)
    def test_rule_holds(project, rule):
        problems = rule(project)
        assert problems == [], problems

    @pytest.mark.parametrize(("rule", "edits", "expected"), cases)
    def test_rule_catches_a_broken_copy(broken_project, rule, edits, expected):
        problems = rule(broken_project(edits))
        assert any(expected in p for p in problems), problems

    return test_rule_holds, test_rule_catches_a_broken_copy
