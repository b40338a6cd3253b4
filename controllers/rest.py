"""The controller's REST API, served by Ryu's WSGI server next to the app (controllers/app.py).

:class:`FabricRest` answers the ``/fabric/...`` routes (status, counters, hosts, topology,
paths, flows, policy, collective intents) from the routing core and the app, and the
``/stats/...`` routes the way Ryu's ofctl_rest does. Every answer is JSON; a bad request or a
refusal of the core is a 400 naming what is wrong, any other failure a 500, and no request can
take the controller down. With a bearer token set (``--fabric-rest-token`` or ``--fabric-rest-
token-file``) every route answers 401 to a request without it, except the live view's page
and its static files (``/fabric/view``, ``/fabric/view/static/...``): they hold no data, and
the page sends the token on every request it makes (the operator gives it in the URL's
fragment, which a browser never sends, see the README). It must not decide anything itself:
a change goes through ``app.apply`` (a core call and a flush), a switch is asked only through
``app.stats``."""

import functools
import hmac
import importlib.resources
import json
import logging

from ryu.app.wsgi import ControllerBase, Response, route
from ryu.lib import ofctl_v1_3

from controllers import view
from controllers.core import POLICIES, IntentError, PolicyError
from fabric.config import IntentPost, PolicyPut, ValidationError, explain

LOG = logging.getLogger("fabric.controller")
# The name under which the app hands itself to FabricRest (WSGIApplication.register).
REST_INSTANCE = "fabric_app"


# The live view's files (controllers/static/, package data) and their content types; only
# these are served.
VIEW_FILES = {"view.html": "text/html", "view.js": "text/javascript", "view.css": "text/css"}
# The page runs only its own script and style and talks only to this server.
VIEW_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                           "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
                "Referrer-Policy": "no-referrer"}


class BadRequest(ValueError):
    """A REST request that cannot be served as asked (answered with 400)."""


def _json(obj, status=200):
    return Response(status=status, content_type="application/json",
                    body=json.dumps(obj, sort_keys=True, default=str).encode())


def authorized(req, token):
    """Does the request carry ``Authorization: Bearer <token>`` (any request, without a
    token)? Compared in constant time, so the token cannot be guessed byte by byte."""
    if token is None:
        return True
    given = req.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode("utf-8", "replace"),
                               f"Bearer {token}".encode("utf-8"))


def rest(handler):
    """Answer a handler's result as JSON; a request without the bearer token (when one is
    set) is a 401, a bad request or a core refusal a 400 with a message, and no request can
    take the controller down."""
    @functools.wraps(handler)
    def wrapper(self, req, **kwargs):
        if not authorized(req, self.app.rest_token):
            response = _json({"error": "missing or wrong bearer token"}, status=401)
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        try:
            result = handler(self, req, **kwargs)
        except (BadRequest, PolicyError, IntentError) as e:
            return _json({"error": str(e)}, status=400)
        except Exception as e:  # noqa: BLE001 - a bug in one request must not kill routing
            LOG.exception("REST %s %s failed", req.method, req.path)
            return _json({"error": f"internal error: {e}"}, status=500)
        if isinstance(result, Response):
            return result
        return _json(result)
    return wrapper


def view_file(name):
    """A file of the live view as a response: 404 for a name not in :data:`VIEW_FILES`."""
    if name not in VIEW_FILES:
        return _json({"error": f"no such file {name!r}; the view serves "
                               f"{sorted(VIEW_FILES)}"}, status=404)
    try:
        body = importlib.resources.files("controllers").joinpath("static", name).read_bytes()
    except OSError as e:   # an installation without its package data
        LOG.error("live view: cannot read controllers/static/%s: %s", name, e)
        return _json({"error": f"controllers/static/{name} is not installed: {e}"}, status=500)
    response = Response(status=200, content_type=VIEW_FILES[name], charset="utf-8", body=body)
    response.headers.update(VIEW_HEADERS)
    return response


def _body(req, model=None, usage=None):
    """The JSON object of a request body; with ``model`` (fabric/config.py), that model
    validated from it, a bad body answered with what is wrong and ``usage``."""
    if not req.body:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = json.loads(req.body)
    except ValueError as e:
        raise BadRequest(f"request body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    if model is None:
        return body
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise BadRequest(f"{explain(e, model, body)}; expected {usage}") from None


def _int(value, what):
    try:
        return int(str(value), 0)
    except ValueError:
        raise BadRequest(f"{what} must be an integer, got {value!r}") from None


def _links(body, key):
    """``body[key]`` as links ``((dpid, port), (dpid, port))``."""
    try:
        return [tuple((int(d), int(p)) for d, p in link) for link in body.get(key, [])]
    except (TypeError, ValueError):
        raise BadRequest(f"'{key}' must be a list of links [[dpid, port], [dpid, port]], "
                         f"got {body.get(key)!r}") from None


class FabricRest(ControllerBase):
    """REST view and control of the controller (see the README for the routes)."""

    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.app = data[REST_INSTANCE]
        self.core = self.app.core

    def _host(self, req, name):
        ref = req.GET.get(name)
        if not ref:
            raise BadRequest(f"query parameter '{name}' (a host IPv4 or MAC address) is missing")
        host = self.core.host_by_ref(ref)
        if host is None:
            raise BadRequest(f"unknown host {ref!r}")
        return host

    def _dp(self, dpid):
        dpid = _int(dpid, "dpid")
        if dpid not in self.app.datapaths:
            raise BadRequest(f"unknown switch {dpid}; connected: {sorted(self.app.datapaths)}")
        return dpid

    # -- our API ---------------------------------------------------------------------------
    @route("fabric", "/fabric/status", methods=["GET"])
    @rest
    def status(self, req, **_):
        return self.app.status()

    @route("fabric", "/fabric/counters", methods=["GET"])
    @rest
    def counters(self, req, **_):
        return {"core": self.core.status()["counters"],
                "controller": {**self.app.counters, **self.app.driver.counters}}

    @route("fabric", "/fabric/hosts", methods=["GET"])
    @rest
    def hosts(self, req, **_):
        return [h._asdict() for h in sorted(self.core.hosts.values())]

    @route("fabric", "/fabric/topology", methods=["GET"])
    @rest
    def topology(self, req, **_):
        return {"switches": sorted(self.core.ports),
                "links": self.core.link_loads(),
                "hosts": [h._asdict() for h in sorted(self.core.hosts.values())]}

    # -- the live view (controllers/view.py, controllers/static/) ----------------------------
    @route("fabric", "/fabric/view", methods=["GET"])
    def view_page(self, req, **_):
        return view_file("view.html")

    @route("fabric", "/fabric/view/static/{name}", methods=["GET"])
    def view_static(self, req, name, **_):
        return view_file(name)

    @route("fabric", "/fabric/view/layout", methods=["GET"])
    @rest
    def view_layout(self, req, **_):
        return view.layout(self.core.ports, self.core.switch_links(),
                           [h._asdict() for h in self.core.hosts.values()],
                           self.app.model_view)

    @route("fabric", "/fabric/paths", methods=["GET"])
    @rest
    def paths(self, req, **_):
        src, dst = self._host(req, "src"), self._host(req, "dst")
        flow_key = None
        if "proto" in req.GET:
            flow_key = (src.ip, dst.ip, _int(req.GET["proto"], "proto"),
                        _int(req.GET.get("sport", 0), "sport"),
                        _int(req.GET.get("dport", 0), "dport"))
        try:
            paths = self.core.paths(src.mac, dst.mac, flow_key)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return {"src": src._asdict(), "dst": dst._asdict(), "policy": self.core.policy,
                "paths": paths, "flows": self.core.learned_flows(src.mac, dst.mac)}

    @route("fabric", "/fabric/flows", methods=["GET"])
    @rest
    def flows(self, req, **_):
        return self.core.learned_flows()

    @route("fabric", "/fabric/policy", methods=["GET"])
    @rest
    def get_policy(self, req, **_):
        return {"policy": self.core.policy, "policies": list(POLICIES)}

    @route("fabric", "/fabric/policy", methods=["PUT"])
    @rest
    def put_policy(self, req, **_):
        body = _body(req, PolicyPut, '{"policy": <name>}')
        self.app.apply(self.core.set_policy, body.policy)
        return {"policy": self.core.policy, "policies": list(POLICIES)}

    @route("fabric", "/fabric/policy/reset", methods=["POST"])
    @rest
    def reset_policy(self, req, **_):
        """Start the active policy afresh (learned flows, intents, weights forgotten)."""
        self.app.apply(self.core.reset)
        return {"policy": self.core.policy, "reset": True}

    @route("fabric", "/fabric/intents", methods=["GET"])
    @rest
    def intents(self, req, **_):
        return self.core.intents()

    @route("fabric", "/fabric/intents", methods=["POST"])
    @rest
    def submit(self, req, **_):
        body = _body(req, IntentPost, '{"id": <string or integer>, "flows": [...]}')
        self.app.apply(self.core.submit_intent, body.id, body.flows)
        return self.core.intent_status(body.id)

    def _intent_id(self, intent_id):
        """The id as submitted: a path segment is a string, an id may have been an integer."""
        for status in self.core.intents():
            if str(status["intent"]) == intent_id:
                return status["intent"]
        return intent_id  # unknown: the core says why

    @route("fabric", "/fabric/intents/{intent_id}", methods=["GET"])
    @rest
    def intent(self, req, intent_id, **_):
        return self.core.intent_status(self._intent_id(intent_id))

    @route("fabric", "/fabric/intents/{intent_id}", methods=["DELETE"])
    @rest
    def withdraw(self, req, intent_id, **_):
        self.app.apply(self.core.withdraw_intent, self._intent_id(intent_id))
        return {"intent": intent_id, "state": "withdrawn"}

    @route("fabric", "/fabric/links/drain", methods=["POST"])
    @rest
    def drain_links(self, req, **_):
        """Make-before-break, first step: routes leave the links that are about to change
        (an optical circuit switch is about to move them)."""
        body = _body(req)
        if set(body) != {"links"}:
            raise BadRequest('expected {"links": [[[dpid, port], [dpid, port]], ...]}')
        links = _links(body, "links")
        self.app.apply(self.core.drain_links, links)
        return {"drained": len(links)}

    @route("fabric", "/fabric/links/commit", methods=["POST"])
    @rest
    def commit_links(self, req, **_):
        """Make-before-break, commit: removed links are gone, added ones exist, one change."""
        body = _body(req)
        if not set(body) <= {"removed", "added"}:
            raise BadRequest('expected {"removed": [...], "added": [...]}')
        removed, added = _links(body, "removed"), _links(body, "added")
        self.app.apply(self.core.commit_links, removed, added)
        return {"removed": len(removed), "added": len(added)}

    # -- as Ryu's ofctl_rest ---------------------------------------------------------------
    @route("fabric", "/stats/switches", methods=["GET"])
    @rest
    def switches(self, req, **_):
        return sorted(self.app.datapaths)

    @route("fabric", "/stats/flow/{dpid}", methods=["GET", "POST"])
    @rest
    def flow_stats(self, req, dpid, **_):
        flt = _body(req) if req.body else {}
        try:
            return self.app.stats(self._dp(dpid), ofctl_v1_3.get_flow_stats, flt)
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequest(f"bad flow filter {flt!r}: {e}") from None

    @route("fabric", "/stats/port/{dpid}", methods=["GET"])
    @rest
    def port_stats(self, req, dpid, **_):
        return self.app.stats(self._dp(dpid), ofctl_v1_3.get_port_stats)

    @route("fabric", "/stats/port/{dpid}/{port}", methods=["GET"])
    @rest
    def port_stats_one(self, req, dpid, port, **_):
        return self.app.stats(self._dp(dpid), ofctl_v1_3.get_port_stats,
                              _int(port, "port"))
