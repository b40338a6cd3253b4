"""Reading Prometheus' text format back in tests, with prometheus_client's own parser."""

from prometheus_client.parser import text_string_to_metric_families


def samples(text):
    """``{(sample name, frozenset of label items): value}`` of an exposition (str or bytes).

    Raises ValueError if a sample appears twice (an exporter bug Prometheus would reject).
    """
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            if key in out:
                raise ValueError(f"sample {s.name} {s.labels} exported twice")
            out[key] = s.value
    return out


def value(scraped, name, **labels):
    """One sample's value (KeyError naming it if absent)."""
    return scraped[(name, frozenset(labels.items()))]


def by_label(scraped, name, label):
    """``{label value: sample value}`` of every sample of ``name``."""
    return {dict(k)[label]: v for (n, k), v in scraped.items() if n == name}
