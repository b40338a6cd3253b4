"""The docs/ folder against the code: the spec reference is what the code generates, the
trace example reads, the policy interface documented is the one the code has, and every file
and section the documentation points to exists."""

import importlib.util
import pathlib
import re

import pytest

from controllers.policies import POLICY_CLASSES, Fabric, Policy
from fabric import spec
from traffic.trace import read_trace

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _gen():
    path = ROOT / "scripts" / "gen_spec_doc.py"
    loader = importlib.util.spec_from_file_location("gen_spec_doc", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def _block(text, lang):
    """The body of the one fenced code block of language ``lang`` in ``text``."""
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
    assert len(blocks) == 1, f"expected one ```{lang} block, found {len(blocks)}"
    return blocks[0]


def test_spec_reference_is_what_the_code_generates():
    gen = _gen()
    assert (DOCS / "spec.md").read_text(encoding="utf-8") == gen.render(), \
        "docs/spec.md is stale: run python scripts/gen_spec_doc.py"
    assert gen.main(["--check"]) == 0


def test_spec_reference_lists_every_key_and_default():
    text = (DOCS / "spec.md").read_text(encoding="utf-8")
    for key in spec.TOP_KEYS:
        assert f"| `{key}` |" in text
    for section in ("controller", "emulation", "twin"):
        for key, default in spec.DEFAULTS[section].items():
            assert re.search(rf"\| `{key}` \| [^|]+ \| (`{re.escape(str(default).lower())}"
                             rf"|none|`{{}}`|`\"{default}\"`)", text), (section, key)


def test_spec_reference_generator_refuses_a_key_it_does_not_describe(monkeypatch):
    gen = _gen()
    monkeypatch.setitem(spec.DEFAULTS, "twin", dict(spec.DEFAULTS["twin"], new_knob=1))
    with pytest.raises(gen.DocError, match="new_knob"):
        gen.render()
    monkeypatch.undo()
    monkeypatch.setattr(spec, "TOP_KEYS", spec.TOP_KEYS | {"extra"})
    with pytest.raises(gen.DocError, match="extra"):
        gen.render()


def test_spec_reference_parses_numpydoc_groups():
    gen = _gen()

    def f(a=1, b=2, c=3, d=4, e=5, f=6):
        """Summary.

        Parameters
        ----------
        a, b : int
            Shared
            meaning.
        c : float
        d, e,
        f
            Wrapped names, about ``c``.

        Returns
        -------
        int
        """
    assert gen.numpydoc_entries(f, "Parameters") == {
        "a": ("int", "Shared meaning."), "b": ("int", "Shared meaning."), "c": ("float", ""),
        **{n: ("", "Wrapped names, about ``c``.") for n in "def"}}


def test_trace_example_reads(tmp_path):
    path = tmp_path / "example.jsonl"
    path.write_text(_block((DOCS / "trace.md").read_text(encoding="utf-8"), "jsonl"))
    trace = read_trace(path)
    assert [f.id for f in trace.schedule.flows] == ["f1", "f2"]
    assert trace.schedule.flows[1].deps == ("f1",)
    assert trace.info == {"version": 1, "time_scale": 0.001}
    assert [r["end_s"] for r in trace.records] == [0.020, None]


def test_design_lists_the_policy_interface():
    text = (DOCS / "design.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(\w+)\(", text, re.M))
    protocol = {name for name in vars(Fabric) if not name.startswith("_")
                and callable(getattr(Fabric, name))}
    hooks = {"place", "adapt", "repair", "reset"}
    assert protocol, "the Fabric protocol lost its methods"
    assert documented == protocol | hooks, (
        f"undocumented: {sorted((protocol | hooks) - documented)}, "
        f"documented but gone: {sorted(documented - protocol - hooks)}")
    for hook in hooks:
        assert callable(getattr(Policy, hook, None)), hook
    for attr in Fabric.__annotations__:
        assert f"`{attr}`" in text, attr


def test_design_example_policy_runs_in_the_twin(monkeypatch):
    """The example policy and the snippet that runs it, as written in docs/design.md."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "design.md").read_text(encoding="utf-8"),
                        re.S)
    assert len(blocks) == 2
    monkeypatch.setitem(POLICY_CLASSES, "roundrobin", None)   # undo removes the example
    scope = {}
    exec(compile(blocks[0] + blocks[1], "docs/design.md", "exec"), scope)
    assert POLICY_CLASSES["roundrobin"] is scope["RoundRobin"]
    records, flows = scope["records"], scope["schedule"].flows
    assert len(records) == len(flows) and all(r["end_s"] is not None for r in records)
    assert not scope["info"]["timed_out"] and scope["info"]["flows_learned_at_setup"] > 0


def _anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _doc_files():
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: p.name)
def test_every_file_a_doc_points_to_exists(doc):
    text = doc.read_text(encoding="utf-8")
    # Markdown links to local files, and repository paths written as code.
    links = re.findall(r"\]\(([^)#:\s]*)(?:#([^)]*))?\)", text)
    paths = re.findall(r"`((?:bench|controllers|docs|experiments|fabric|scripts|tests|"
                       r"topologies|traffic)/[\w./-]*)`", text)
    missing = [p for p, _ in links if p and not (doc.parent / p).exists()]
    missing += [f"{p}#{a}" for p, a in links
                if a and (doc.parent / p if p else doc).is_file()
                and a not in _anchors(doc.parent / p if p else doc)]
    missing += [p for p in paths if "<" not in p and not (ROOT / p).exists()]
    assert not missing, f"{doc.name} points to missing files or sections: {missing}"
