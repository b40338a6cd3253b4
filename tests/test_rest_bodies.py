"""The REST routes that take a body (controllers/rest.py) validate it with the models of
fabric/config.py: a bad body is a 400 naming the key and value and what was expected, and
nothing reaches the routing core. Driven without a server: the handlers with a fake request
and a recording app, the real core's policy and intent checks behind them."""

import json
import types

import pytest

from controllers.core import POLICIES, RoutingCore
from controllers.launcher import apply_shim


class App:
    """What FabricRest needs of the Ryu app: the core, no token, and ``apply``."""

    rest_token = None

    def __init__(self):
        self.core = RoutingCore()
        self.applied = []

    def apply(self, fn, *args):
        self.applied.append((fn.__name__, args))
        return fn(*args)


def _handler():
    apply_shim()
    from controllers import rest
    handler = rest.FabricRest.__new__(rest.FabricRest)
    handler.app = App()
    handler.core = handler.app.core
    return handler


def _req(method, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return types.SimpleNamespace(method=method, path="/fabric/x", headers={}, body=raw, GET={})


def _answer(response):
    return response.status_int, json.loads(response.body)


@pytest.mark.parametrize("body, message", [
    ({"name": "ecmp"}, "unknown keys ['name']; known: ['policy']; expected "
                       '{"policy": <name>}'),
    ({"policy": 3}, "'policy' must be a string, got 3"),
    (b"{not json", "not JSON"),
    ([], "must be a JSON object"),
])
def test_a_bad_policy_body_is_a_400_that_names_the_key(body, message):
    handler = _handler()
    code, answer = _answer(handler.put_policy(_req("PUT", body)))
    assert code == 400 and message in answer["error"], answer
    assert handler.app.applied == []


def test_a_policy_body_reaches_the_core():
    handler = _handler()
    code, answer = _answer(handler.put_policy(_req("PUT", {"policy": "hedera"})))
    assert code == 200 and answer == {"policy": "hedera", "policies": list(POLICIES)}
    code, answer = _answer(handler.put_policy(_req("PUT", {"policy": "magic"})))
    assert code == 400 and "unknown policy 'magic'" in answer["error"]


@pytest.mark.parametrize("body, message", [
    ({"flows": []}, "missing key 'id'; expected"),
    ({"id": "x", "flows": "nonsense"}, "'flows' must be a list, got 'nonsense'"),
    ({"id": 1.5, "flows": []}, "'id' must be a string or an integer, got 1.5"),
    ({"id": "x", "flows": [], "priority": 1}, "unknown keys ['priority']"),
])
def test_a_bad_intent_body_is_a_400_that_names_the_key(body, message):
    handler = _handler()
    code, answer = _answer(handler.submit(_req("POST", body)))
    assert code == 400 and message in answer["error"], answer
    assert handler.app.applied == []
