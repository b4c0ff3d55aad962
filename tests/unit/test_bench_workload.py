"""The benchmark's workload looks like the national axis and routes as such."""

from __future__ import annotations

import statistics

import pytest

from bench.workload import (
    ANSWER_CODES,
    MAX_FANOUT,
    Workload,
    bench_directory,
)
from schemas import EdocPackage, StatusPackage, parse_package


def test_the_directory_is_the_95_top_level_nodes_one_agency_each() -> None:
    gateways = bench_directory()
    assert len(gateways) == 95
    assert len({g.id for g in gateways}) == 95
    assert len({g.agency for g in gateways}) == 95
    assert {g.agency for g in gateways} >= {"000.00.00.A01", "000.00.00.G31", "000.00.00.H63"}
    with pytest.raises(ValueError, match="2 to 95"):
        bench_directory(96)


def test_documents_are_5_to_10_kb_with_fanout_1_to_5_and_parse_cleanly() -> None:
    workload = Workload(bench_directory(), seed=7)
    docs = [workload.document("T", i) for i in range(300)]
    sizes = [len(d.body) for d in docs]
    assert min(sizes) >= 5 * 1024
    assert max(sizes) <= 10 * 1024 + 200
    fanouts = [len(d.recipients) for d in docs]
    assert set(fanouts) == set(range(1, MAX_FANOUT + 1))
    assert 2.7 <= statistics.mean(fanouts) <= 3.3
    assert len({d.document_id for d in docs}) == len(docs)
    for d in docs[:20]:
        pkg = parse_package(d.body).package
        assert isinstance(pkg, EdocPackage)
        assert pkg.sender.organ_id == d.sender.agency
        assert {r.organ_id for r in pkg.recipients} == {r.agency for r in d.recipients}
        assert d.sender not in d.recipients


def test_answers_are_status_packages_about_the_document_cycling_01_03_06() -> None:
    workload = Workload(bench_directory(10), seed=1)
    doc = workload.document("T", 1)
    codes = []
    for recipient in doc.recipients * 3:
        code = workload.next_answer_code()
        codes.append(code)
        pkg = parse_package(workload.status(doc, recipient, code)).package
        assert isinstance(pkg, StatusPackage)
        assert pkg.sender.organ_id == recipient.agency
        assert pkg.response_for.organ_id == doc.sender.agency
        assert pkg.response_for.document_id == doc.document_id
        assert pkg.status_code == code
    assert codes[:3] == list(ANSWER_CODES)


def test_both_templates_are_used_with_their_attachments() -> None:
    workload = Workload(bench_directory(5), seed=3)
    kinds = set()
    for i in range(40):
        pkg = parse_package(workload.document("K", i).body).package
        assert isinstance(pkg, EdocPackage)
        kinds.add(pkg.document_type.type)
        assert any(a.zip_wrapped for a in pkg.attachments)
    assert kinds == {"1", "71"}
