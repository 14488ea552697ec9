"""JUnit XML, which every CI system shows as test results: one testcase per metric."""

from __future__ import annotations

from xml.etree import ElementTree

from bkprof.check.compare import FAIL, SKIP, Outcome
from bkprof.check.metrics import number


def junit_xml(outcomes: list[Outcome], suite: str = "bkprof check") -> str:
    failed = sum(o.status == FAIL for o in outcomes)
    skipped = sum(o.status == SKIP for o in outcomes)
    counts = {"tests": str(len(outcomes)), "failures": str(failed), "errors": "0", "skipped": str(skipped)}
    root = ElementTree.Element("testsuites", {"name": suite, **counts})
    cases = ElementTree.SubElement(root, "testsuite", {"name": suite, **counts})
    for outcome in outcomes:
        case = ElementTree.SubElement(cases, "testcase", {"classname": "bkprof.check", "name": outcome.metric})
        ElementTree.SubElement(case, "system-out").text = _summary(outcome)
        if outcome.status == FAIL:
            ElementTree.SubElement(case, "failure", {"message": outcome.reason, "type": "threshold"}).text = _summary(outcome)
        elif outcome.status == SKIP:
            ElementTree.SubElement(case, "skipped", {"message": outcome.reason})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def _summary(outcome: Outcome) -> str:
    current, baseline = (number(v) if v is not None else "none" for v in (outcome.current, outcome.baseline))
    return f"threshold: {outcome.threshold}; current: {current}; baseline: {baseline}"
