"""JUnit XML, which every CI system shows as test results: one testcase per metric."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from bkprof.check.compare import FAIL, SKIP, Outcome
from bkprof.check.metrics import number


# Characters XML 1.0 cannot hold at all, even escaped (control characters, lone surrogates, U+FFFE/F)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """`text` with each character XML cannot hold written as \\xNN or \\uNNNN, so any metric name gives valid XML."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text)


def junit_xml(outcomes: list[Outcome], suite: str = "bkprof check") -> str:
    failed = sum(o.status == FAIL for o in outcomes)
    skipped = sum(o.status == SKIP for o in outcomes)
    counts = {"tests": str(len(outcomes)), "failures": str(failed), "errors": "0", "skipped": str(skipped)}
    root = ElementTree.Element("testsuites", {"name": suite, **counts})
    cases = ElementTree.SubElement(root, "testsuite", {"name": suite, **counts})
    for outcome in outcomes:
        case = ElementTree.SubElement(cases, "testcase", {"classname": "bkprof.check", "name": _xml_text(outcome.metric)})
        ElementTree.SubElement(case, "system-out").text = _xml_text(_summary(outcome))
        if outcome.status == FAIL:
            ElementTree.SubElement(case, "failure", {"message": _xml_text(outcome.reason), "type": "threshold"}).text = _xml_text(_summary(outcome))
        elif outcome.status == SKIP:
            ElementTree.SubElement(case, "skipped", {"message": _xml_text(outcome.reason)})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def _summary(outcome: Outcome) -> str:
    current, baseline = (number(v) if v is not None else "none" for v in (outcome.current, outcome.baseline))
    return f"threshold: {outcome.threshold}; current: {current}; baseline: {baseline}"
