"""BehaviourTest (RFC 5780) on its own: order, inconclusive answers, a useless OTHER-ADDRESS."""

from __future__ import annotations

from a2al_mcp.nat.behaviour import BehaviourTest, Filtering, Mapping
from a2al_mcp.nat.stun import CHANGE_IP, CHANGE_PORT, StunAnswer

P = ("203.0.113.3", 3478)
A = ("203.0.113.4", 3479)
M1 = ("198.51.100.21", 4121)


def ans(purpose: str, source, mapped=M1, error=None) -> StunAnswer:
    return StunAnswer(b"x" * 12, P, purpose, source, mapped, error=error)


def test_eif_then_eim() -> None:
    t = BehaviourTest(P, M1, A)
    asks = t.start()
    assert [(a.server, a.change) for a in asks] == [(P, CHANGE_IP | CHANGE_PORT), (P, CHANGE_PORT)]
    assert t.on_answer(ans("filter-ip", A)) == []  # waits for the other filtering test
    [mapping] = t.on_answer(ans("filter-port", (P[0], A[1])))
    assert mapping.server == (A[0], P[1]) and mapping.change == 0
    assert t.on_answer(ans("mapping", (A[0], P[1]))) == [] and t.done
    assert t.result.filtering is Filtering.ENDPOINT_INDEPENDENT
    assert t.result.mapping is Mapping.ENDPOINT_INDEPENDENT


def test_timeouts_mean_address_and_port_dependent_and_edm() -> None:
    t = BehaviourTest(P, M1, A)
    t.start()
    t.on_timeout("filter-ip")
    [mapping] = t.on_timeout("filter-port")
    assert mapping.server == (A[0], P[1])
    assert t.result.filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT
    t.on_answer(ans("mapping", (A[0], P[1]), mapped=("198.51.100.21", 50007)))
    assert t.done and t.result.mapping is Mapping.DEPENDENT


def test_error_or_wrong_origin_is_inconclusive_not_open() -> None:
    t = BehaviourTest(P, M1, A)
    t.start()
    t.on_answer(ans("filter-ip", P))  # answered from the primary: CHANGE-REQUEST ignored
    t.on_answer(ans("filter-port", P, mapped=None, error=420))
    assert t.result.filtering is None
    t.on_timeout("mapping")
    assert t.done and t.result.mapping is None


def test_only_change_port_answered_is_address_dependent() -> None:
    t = BehaviourTest(P, M1, A)
    t.start()
    t.on_timeout("filter-ip")
    t.on_answer(ans("filter-port", (P[0], A[1])))
    assert t.result.filtering is Filtering.ADDRESS_DEPENDENT


def test_an_other_address_that_is_not_one_runs_nothing() -> None:
    t = BehaviourTest(P, M1, (P[0], 3479))  # same IP: no change-IP test possible
    assert t.start() == [] and t.done and t.result.filtering is None


def test_stray_answers_are_ignored() -> None:
    t = BehaviourTest(P, M1, A)
    t.start()
    assert t.on_answer(ans("mapping", A)) == [] and t.on_timeout("binding") == []
    assert not t.done
