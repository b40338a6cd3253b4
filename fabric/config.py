"""The one validated, frozen config layer: pydantic models of what users hand us.

Experiment specs (:class:`Spec`, read by fabric/spec.py), the bodies of the controller's REST
requests (:class:`PolicyPut`, :class:`IntentPost`, used by controllers/rest.py) and the lines
of a trace file (:class:`TraceHeader`, :class:`TraceFlow`, docs/trace.md) are declared here
once; their JSON Schemas (:func:`json_schema`, ``aifabric schema``) come from the same models,
so the schema an editor checks a spec against is the one the runner applies. Every model is
frozen and forbids unknown keys. :func:`explain` turns a :class:`pydantic.ValidationError`
into the one line users get: the file, the key path and the value.

What stays outside: topology and workload parameter *values* are checked by their builders
(topologies/_params.py, traffic/workloads.py) when fabric/runner.py or fabric/sweep.py builds
them before anything starts, because those checks depend on each other and on the fabric
(an even ``k``, a ``top_k`` below the host count) and are the ones Python callers and ``mn
--topo`` get too; here a topology or workload is checked by name and parameter names, and its
schema lists each one's parameters with their defaults. Policy and health thresholds are
checked by the routing core's own frozen dataclasses (controllers.policies.PolicyConfig,
controllers.health.HealthConfig), which the core applies to options from any source and which
must not import pydantic; the models call them and take their schemas from them. This module
reads no file and starts nothing.
"""

import inspect
import re
import typing
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      WithJsonSchema, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from controllers.core import POLICIES
from controllers.health import HealthConfig, HealthError
from controllers.policies import PolicyConfig, PolicyError

# Ryu's own apps a spec may name as its policy, with their modules (fabric/controller.py
# runs them through our launcher); kept here so the models need nothing that starts processes.
REFERENCE_APPS = {"stp": "ryu.app.simple_switch_stp_13"}
POLICY_NAMES = POLICIES + tuple(REFERENCE_APPS)
BACKENDS = ("emulation", "twin")
TIMEBASES = ("nominal", "emulated")
CIRCUIT_PLANS = ("uniform", "engineered", "reconfigure", "phased")
CONGESTION_CONTROLS = ("cubic", "reno", "bbr")
COUNTED_PLACEMENTS = ("packed", "spread", "random")
MAX_JOB_NAME = 16
# What every generator gets from the run rather than from ``params``.
WORKLOAD_SUPPLIED = ("hosts", "seed", "g")


def _topologies():
    """topologies.TOPOLOGIES, imported when first needed: traffic/trace.py uses this module,
    and traffic/workloads.py (which the workloads' registry is) imports traffic/trace.py."""
    from topologies import TOPOLOGIES
    return TOPOLOGIES


def _workloads():
    """traffic.workloads.WORKLOADS, imported when first needed (see :func:`_topologies`)."""
    from traffic.workloads import WORKLOADS
    return WORKLOADS


class Expect:
    """What a value must be, in words, where the words derived from its type would not do
    (annotation metadata read by :func:`expects`; invisible to validation and schemas)."""

    def __init__(self, text):
        self.text = text


def fail(message):
    """Raise a validation error whose message is ``message`` as written (it names the key
    relative to the model that raises it; :func:`explain` adds the path to that model)."""
    raise PydanticCustomError("config", "{message}", {"message": message})


class Frozen(BaseModel):
    """Base of every model here: frozen, unknown keys refused, no type coercion (a count is
    an integer, not ``true`` or ``"4"``; a rate a number, not a string)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _params_schema(fn, skip=()):
    """JSON Schema of a builder's or generator's keyword parameters: their names and
    defaults, unknown names refused. No types: a builder may take a number or a list for one
    parameter (``site_km``), and it checks the values itself."""
    props = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip:
            continue
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        simple = default is None or isinstance(default, (bool, int, float, str, list))
        props[p.name] = {"default": default} if simple and default is not p.empty else {}
    return {"type": "object", "properties": props, "additionalProperties": False}


def _ref_schema(schema, kind, registry, skip=()):
    """Make ``schema`` (a model's, in place) accept a bare name of ``registry`` or ``{name,
    params}`` with that entry's own parameters, one variant per name."""
    variants = [{"type": "string", "enum": list(registry)}]
    for name, fn in registry.items():
        variants.append({
            "type": "object", "title": f"{kind} {name}",
            "properties": {"name": {"const": name}, "params": _params_schema(fn, skip)},
            "required": ["name"], "additionalProperties": False})
    for key in ("properties", "required", "type", "additionalProperties"):
        schema.pop(key, None)
    schema["anyOf"] = variants


def _named(value):
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and value.get("params", ()) is None:
        return dict(value, params={})
    return value


class TopologyRef(Frozen):
    """A topology of topologies/ and its builder's parameters."""

    expects: typing.ClassVar[str] = "a name or a mapping"
    model_config = ConfigDict(json_schema_extra=lambda schema, _: _ref_schema(
        schema, "topology", _topologies()))

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    _named = model_validator(mode="before")(_named)

    @model_validator(mode="after")
    def _known(self):
        TOPOLOGIES = _topologies()
        if self.name not in TOPOLOGIES:
            fail(f"unknown topology {self.name!r}, expected one of {', '.join(TOPOLOGIES)}")
        accepted = inspect.signature(TOPOLOGIES[self.name]).parameters
        for param in self.params:
            if param not in accepted:
                fail(f"topology {self.name!r} has no parameter {param!r}; it accepts "
                     f"{', '.join(accepted)}")
        return self


class WorkloadRef(Frozen):
    """A workload of traffic/workloads.py and its generator's parameters."""

    expects: typing.ClassVar[str] = "a name or a mapping"
    model_config = ConfigDict(json_schema_extra=lambda schema, _: _ref_schema(
        schema, "workload", _workloads(), WORKLOAD_SUPPLIED))

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    _named = model_validator(mode="before")(_named)

    @model_validator(mode="after")
    def _known(self):
        WORKLOADS = _workloads()
        if self.name not in WORKLOADS:
            fail(f"unknown workload {self.name!r}; known: {', '.join(sorted(WORKLOADS))}")
        accepted = [p for p in inspect.signature(WORKLOADS[self.name]).parameters
                    if p not in WORKLOAD_SUPPLIED]
        for param in self.params:
            if param not in accepted:
                fail(f"workload {self.name!r}: unknown parameter {param!r}; "
                     f"accepted: {', '.join(accepted)}")
        return self


JobName = Annotated[str, Field(pattern=rf"^[A-Za-z0-9_-]{{1,{MAX_JOB_NAME}}}$"),
                    Expect(f"1-{MAX_JOB_NAME} letters, digits, - or _")]
Placement = Annotated[
    Literal[COUNTED_PLACEMENTS + ("explicit",)],
    Expect(f"one of {list(COUNTED_PLACEMENTS)} or {{hosts: [h1, ...]}}"),
    WithJsonSchema({"anyOf": [
        {"enum": list(COUNTED_PLACEMENTS) + ["explicit"]},
        {"type": "object", "properties": {"hosts": {"type": "array", "minItems": 1,
                                                    "items": {"type": "string"}}},
         "required": ["hosts"], "additionalProperties": False}],
        "default": "packed"})]


class Job(Frozen):
    """One job of ``jobs``: a workload on some of the fabric's hosts (traffic/jobs.py)."""

    expects: typing.ClassVar[str] = "a mapping"
    noun: typing.ClassVar[str] = "a job"

    name: JobName
    workload: WorkloadRef
    placement: Placement = "packed"
    hosts: Annotated[int | list[str] | None, Expect("an integer >= 1 or a list of host names"),
                     WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1},
                                               {"type": "array", "items": {"type": "string"}},
                                               {"type": "null"}]})
                     ] = None
    after: JobName | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _placed(cls, job, handler):
        """``placement: {hosts: [...]}`` is checked as ``placement: explicit, hosts: [...]``;
        then the hosts must suit the placement."""
        key = "hosts"
        if isinstance(job, dict) and isinstance(job.get("placement"), dict):
            extra = set(job["placement"]) - {"hosts"}
            if extra:
                fail(f"'placement' has unknown keys {sorted(extra)}; known: ['hosts']")
            if job.get("hosts") is not None:
                fail("'hosts' is not allowed beside 'placement.hosts'")
            job = dict(job, placement="explicit", hosts=job["placement"].get("hosts"))
            key = "placement.hosts"
        out = handler(job)
        hosts = out.hosts
        if out.placement == "explicit":
            if not (isinstance(hosts, list) and hosts):
                fail(f"'{key}' must be a non-empty list of host names, got {hosts!r}")
            for h in hosts:
                if hosts.count(h) != 1:
                    fail(f"'{key}' lists {h!r} more than once")
        elif not (isinstance(hosts, int) and hosts >= 1):
            fail(f"'hosts' must be an integer >= 1 (how many hosts, placement "
                 f"{out.placement}), got {hosts!r}")
        return out


def _dataclass_schema(cls):
    """The JSON Schema of a config dataclass's options: names, types, defaults."""
    schema = TypeAdapter(cls).json_schema()
    for prop in schema["properties"].values():
        prop.pop("title", None)
    return {"properties": schema["properties"], "additionalProperties": False, "default": {}}


def _config(cls, error, options):
    try:
        cls.from_options(options)
    except (error, TypeError) as e:
        fail(str(e))
    return options


class Controller(Frozen):
    """Our controller (reference apps ignore it)."""

    stats_interval_s: float = Field(
        1.0, gt=0, description="period of the port and flow statistics rounds (s)")
    fast_failover: bool = Field(
        True, description="protect each next hop with an OpenFlow FAST_FAILOVER group")
    options: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra=_dataclass_schema(PolicyConfig),
        description="policy thresholds: see [controller.options](#controlleroptions)")
    health: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra=_dataclass_schema(HealthConfig),
        description="gray-failure and flap-dampening thresholds: see "
                    "[controller.health](#controllerhealth)")

    @field_validator("options")
    @classmethod
    def _policy(cls, options):
        return _config(PolicyConfig, PolicyError, options)

    @field_validator("health")
    @classmethod
    def _health(cls, health):
        return _config(HealthConfig, HealthError, health)


class Emulation(Frozen):
    """The Mininet backend."""

    host_link_mbps: float = Field(
        20.0, gt=0, le=1000,
        description="emulated rate of a host link (Mbit/s); sets the scale factor")
    queue_packets: int = Field(
        1000, ge=1, description="tail-drop queue length of every shaped interface (packets)")
    congestion_control: Literal[CONGESTION_CONTROLS] = Field(
        "cubic", description="TCP congestion control set in every host")
    tcp_window_bytes: int = Field(
        65536, ge=0, description="receive buffer the agents set, which clamps the TCP window "
                                 "(bytes; 0: autotuning)")
    mtu: int = Field(9000, ge=1280, le=9000, description="MTU of every interface (bytes)")
    static_arp: bool = Field(
        True, description="give every host permanent neighbour entries for all fabric "
                          "hosts; off, ARP goes through the controller")
    emulate_delay: bool = Field(
        True, description="apply propagation delay (scaled by 1/scale): with netem where the "
                          "kernel has it, else with a userspace forwarder on links whose "
                          "scaled delay is >= 0.05 ms")
    flow_counter_refresh_ms: int | None = Field(
        100, ge=10, le=10000,
        description="longest age of the flow counters the switches report (ms): Open "
                    "vSwitch's other_config:max-revalidator, set for the run and put back "
                    "after (its default, 500, is older than a statistics round); null leaves "
                    "Open vSwitch's setting alone")
    source_ports: Literal["seeded", "kernel"] = Field(
        "seeded", description="`seeded`: the agents bind every connection to the source port "
                              "drawn from the run's seed (traffic/ports.py), the port the "
                              "twin hashes, so ECMP picks the same buckets on every run of a "
                              "seed and on both backends; `kernel`: the kernel's ephemeral "
                              "ports, a fresh draw on every run")


class Twin(Frozen):
    """The flow-level simulator (fabric/twin.py)."""

    timebase: Literal[TIMEBASES] = Field(
        "nominal", description="`nominal`: the fabric's own rates and seconds; `emulated`: "
                               "the emulation's scaled ones")
    detect_s: float = Field(
        0.0, ge=0, description="time from a link failure to the controller's port event (s)")
    max_time_s: float | None = Field(
        None, gt=0, description="simulated-time limit (s); none by default")
    resolution: float = Field(
        0.0, ge=0, lt=0.1, description="a flow whose time left is below this fraction of the "
                                       "time it has run ends with the flows ending now; "
                                       "0 = exact; only with epoch 0")
    epoch: float = Field(
        0.0, ge=0, lt=1, description="solve the max-min rates again only once this fraction "
                                     "of the flows in flight have started or ended (a flow "
                                     "starting in between takes what its links have free); "
                                     "0 = at every event")


SECTIONS = {"controller": Controller, "emulation": Emulation, "twin": Twin}
RunName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$"), Expect("letters, digits, - or _")]


class Spec(Frozen):
    """An experiment spec (docs/spec.md); the checked form is its :meth:`model_dump`."""

    model_config = ConfigDict(title="aifabric experiment spec")

    name: RunName | None = Field(
        None, description="names the run's results directory; default "
                          "`<topology>-<workload>` (`<topology>-jobs` with `jobs`)")
    seed: int = Field(
        1, ge=0, description="seed of the workload generator (repeat i uses seed + i)")
    repeats: int = Field(1, ge=1, description="how many times the run is repeated")
    baseline: bool = Field(
        False, description="also run a one-switch non-blocking fabric with the same hosts "
                           "and rates")
    policy: Literal[POLICY_NAMES] = Field(
        "ecmp", description="routing policy of the controller, or a Ryu reference app")
    backend: Literal[BACKENDS] = Field(
        "emulation", description="who carries the flows: Mininet + Open vSwitch, or the "
                                 "flow-level twin")
    timeout_s: float = Field(
        120.0, gt=0, description="seconds the schedule may run (from the clock's start) "
                                 "before the agents are stopped")
    circuits: Literal[CIRCUIT_PLANS] = Field(
        "uniform", description="circuit plan of a topology with optical circuit switches "
                               "(`jupiter`, `railocs`): the topology's own (uniform by "
                               "default), engineered for the run's demand between blocks "
                               "before it starts, moved to that plan as the run's flows "
                               "start, or engineered for each phase of the schedule (its jobs, "
                               "else its `phase` tags) and moved between phases as each ends, "
                               "make-before-break, staged so that no block pair carrying "
                               "flows is cut off (fabric/optical.py)")
    topology: TopologyRef = Field(description="the fabric: see [Topologies](#topologies)")
    workload: WorkloadRef | None = Field(
        None, description="the traffic: see [Workloads](#workloads); required unless `jobs` "
                          "is given")
    jobs: Annotated[list[Job] | None, Expect("a non-empty list of jobs")] = Field(
        None, min_length=1, description="several workloads at once: see [Jobs](#jobs); not "
                                        "together with `workload`")
    controller: Controller = Field(
        default_factory=Controller, description="our controller: see [controller](#controller)")
    emulation: Emulation = Field(
        default_factory=Emulation, description="the Mininet backend: see [emulation](#emulation)")
    twin: Twin = Field(
        default_factory=Twin, description="the flow-level simulator: see [twin](#twin)")

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, spec):
        """An empty section (``twin:`` alone) keeps every default."""
        if isinstance(spec, dict):
            spec = {k: ({} if k in SECTIONS and v is None else v) for k, v in spec.items()}
            if spec.get("jobs") is not None and spec.get("workload") is not None:
                fail("give 'workload' or 'jobs', not both")
        return spec

    @model_validator(mode="after")
    def _whole(self):
        if self.jobs is None and self.workload is None:
            fail("missing key 'workload'")
        seen = {}
        for i, job in enumerate(self.jobs or ()):
            if job.name in seen:
                fail(f"job {job.name!r} (jobs[{i}]): 'name' {job.name!r} is used by "
                     f"jobs[{seen[job.name]}] too")
            if job.after is not None and job.after not in seen:
                fail(f"job {job.name!r} (jobs[{i}]): 'after' {job.after!r} is not the name of "
                     f"an earlier job")
            seen[job.name] = i
        if self.backend == "twin" and self.policy not in POLICIES:
            fail(f"'policy' {self.policy!r} is a Ryu reference app, which the twin does not "
                 f"run; the twin runs {list(POLICIES)}")
        if self.name is None:
            what = "jobs" if self.jobs is not None else self.workload.name
            # The default name is part of the checked spec; frozen models are set once, here.
            object.__setattr__(self, "name", f"{self.topology.name}-{what}")
        return self


# -- the controller's REST request bodies --------------------------------------------------

class PolicyPut(Frozen):
    """``PUT /fabric/policy``: the routing policy to switch to."""

    policy: str


class IntentPost(Frozen):
    """``POST /fabric/intents``: a collective intent, its flows checked by the core
    (controllers/intents.py)."""

    id: str | int
    flows: list[Any]


# -- trace lines (docs/trace.md) -----------------------------------------------------------

class TraceInfo(BaseModel):
    """The header's ``trace`` object."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    version: int = 1
    time_scale: float = Field(1.0, gt=0)
    topology: dict[str, Any] | None = None


class TraceHeader(Frozen):
    """Line 1 of a trace or schedule file."""

    schedule: str
    meta: dict[str, Any] = Field(default_factory=dict)
    trace: TraceInfo | None = None


class Measured(Frozen):
    """A flow's record from the run, in measured seconds since the run's clock started."""

    start_s: float | None = None
    sent_s: float | None = None
    end_s: float | None = None
    bytes_received: float | None = None


class TraceFlow(Frozen):
    """Every line after the header: one flow, and what was measured of it."""

    id: str = Field(min_length=1)
    src: str = Field(min_length=1)
    dst: str = Field(min_length=1)
    bytes: int = Field(gt=0)
    deps: list[str] = Field(default_factory=list)
    start_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    delay_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    tags: dict[str, Any] = Field(default_factory=dict)
    measured: Measured | None = None


TRACE_LINE = Annotated[TraceHeader | TraceFlow, Field(title="aifabric trace line")]
SCHEMAS = ("spec", "trace")


def json_schema(kind):
    """The JSON Schema (a dict) of ``kind``: ``spec`` or ``trace`` (one line of a trace)."""
    if kind == "spec":
        schema = Spec.model_json_schema()
    elif kind == "trace":
        schema = TypeAdapter(TRACE_LINE).json_schema()
        schema["title"] = "aifabric trace line"
        schema["description"] = ("One line of a trace (JSON lines): the first is a "
                                 "TraceHeader, every other a TraceFlow (docs/trace.md).")
    else:
        raise ValueError(f"no schema {kind!r}; known: {', '.join(SCHEMAS)}")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# -- one line per error ------------------------------------------------------------------

def _strip(annotation):
    """``annotation`` without Annotated and None, and its Annotated metadata."""
    meta = []
    while typing.get_origin(annotation) is Annotated:
        meta += list(annotation.__metadata__)
        annotation = annotation.__origin__
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            inner, more = _strip(args[0])
            return inner, meta + more
    return annotation, meta


def _bounds(field):
    lo = hi = None
    for m in field.metadata:
        for attr, side in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                if side[0] == ">":
                    lo = (side, getattr(m, attr))
                else:
                    hi = (side, getattr(m, attr))
    return lo, hi


def _phrase(annotation, field):
    """Words for a value of type ``annotation`` with ``field``'s constraints."""
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        return " or ".join(_phrase(_strip(a)[0], field) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if typing.get_origin(annotation) is Literal:
        return f"one of {list(typing.get_args(annotation))}"
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        noun = "an integer" if annotation is int else "a number"
        lo, hi = _bounds(field)
        if lo and hi and annotation is int and lo[0] == ">=" and hi[0] == "<=":
            return f"{noun} from {lo[1]} to {hi[1]}"
        if lo and hi:
            return (f"{noun} in {'[' if lo[0] == '>=' else '('}{lo[1]}, "
                    f"{hi[1]}{']' if hi[0] == '<=' else ')'}")
        if lo or hi:
            side, bound = lo or hi
            return f"{noun} {side} {bound}"
        return noun
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return getattr(annotation, "expects", "a mapping")
    if annotation is str:
        return "a string"
    if typing.get_origin(annotation) is dict:
        return "a mapping"
    if typing.get_origin(annotation) is list:
        return "a list"
    return "valid"


def expects(field):
    """What a field's value must be, in words (``an integer >= 1``, ``one of [...]``)."""
    annotation, meta = _strip(field.annotation)
    for m in meta + list(field.metadata):
        if isinstance(m, Expect):
            return m.text
    text = _phrase(annotation, field)
    nullable = type(None) in typing.get_args(field.annotation)
    return f"{text} or null" if nullable and "null" not in text else text


def _item_model(annotation):
    annotation, _ = _strip(annotation)
    if typing.get_origin(annotation) is list:
        annotation, _ = _strip(typing.get_args(annotation)[0])
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
        else None


def _field(model, loc):
    """The FieldInfo at ``loc`` (model field names and list indices) below ``model``."""
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = _item_model(field.annotation)
    return field


def _trim(model, loc):
    """``loc`` without what pydantic appends below a field that is not a model (the member
    of a union it tried: ``('id', 'str')`` is about ``id``)."""
    out = []
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            continue
        if model is None or part not in model.model_fields:
            break
        out.append(part)
        model = _item_model(model.model_fields[part].annotation)
    return tuple(out)


def _dotted(loc):
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _scope(model, loc, raw, by_name=True):
    """Where an error is: a prefix naming the list element it is in (with ``by_name``, a job
    by its name when it has a valid one), the key path below it, the element's model and
    the element as given."""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            head, rest = loc[:i], loc[i + 1:]
            item = raw
            for key in loc[:i + 1]:
                ok = isinstance(item, dict) and key in item or \
                    isinstance(item, list) and isinstance(key, int) and key < len(item)
                item = item[key] if ok else None
            name = item.get("name") if isinstance(item, dict) else None
            where = f"{_dotted(head)}[{part}]"
            if by_name and head == ("jobs",) and isinstance(name, str) and \
                    re.fullmatch(rf"[A-Za-z0-9_-]{{1,{MAX_JOB_NAME}}}", name):
                where = f"job {name!r} ({where})"
            field = _field(model, head)
            return where, rest, _item_model(field.annotation) if field else None, item
    return None, loc, model, raw


def explain(error, model=Spec, raw=None, quote=True):
    """The one line that says what is wrong in ``raw`` (validated as ``model``): the key
    path and the bad value, as ``[<item>: ]<what>`` (the caller adds the file).

    Parameters
    ----------
    error : pydantic.ValidationError
    model : type of BaseModel
    raw : object
        What was validated (to name a job by its name).
    quote : bool
        Quote the key path (``'emulation.mtu'``), as spec errors do; trace errors do not.

    Returns
    -------
    str
    """
    errors = error.errors(include_url=False)
    # An unknown key first: it is most often a misspelt one, which explains the rest.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(first["loc"]) if first["type"] == "extra_forbidden" else \
        _trim(model, first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = loc[:-1]
        # Against the position, not the name: the name may be among what is wrong.
        where, rel, sub, _ = _scope(model, parent, raw, by_name=False)
        extra = sorted(str(e["loc"][-1]) for e in errors
                       if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == parent)
        if rel:
            field = _field(sub, rel)
            sub = _item_model(field.annotation) if field is not None else None
        known = sorted(sub.model_fields) if sub is not None else []
        section = f"{_dotted(rel)} " if rel else ""
        text = f"unknown {section}keys {extra}; known: {known}"
        return f"{where}: {text}" if where else text
    where, rel, sub, item = _scope(model, loc, raw)
    dotted = _dotted(rel)
    key = f"'{dotted}'" if quote else dotted
    if kind == "config":
        text = f"{key}: {first['msg']}" if rel else first["msg"]
    elif kind == "missing":
        parent = _dotted(rel[:-1])
        text = f"missing key '{rel[-1]}'" + (f" in '{parent}'" if parent else "")
    elif not rel and where and sub is not None:
        text = (f"{getattr(sub, 'noun', 'an item')} must be "
                f"{getattr(sub, 'expects', 'a mapping')}, got {item!r}")
    else:
        field = _field(sub, rel)
        what = expects(field) if field is not None else first["msg"].lower()
        text = f"{key} must be {what}, got {first['input']!r}"
    return f"{where}: {text}" if where else text


__all__ = ["Spec", "Job", "TopologyRef", "WorkloadRef", "Controller", "Emulation", "Twin",
           "PolicyPut", "IntentPost", "TraceHeader", "TraceFlow", "Measured", "TraceInfo",
           "json_schema", "explain", "expects", "ValidationError", "SCHEMAS"]
