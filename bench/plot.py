"""The freshness latency distribution as a PNG (histogram and CDF)."""

from __future__ import annotations

from pathlib import Path

MATPLOTLIB_MISSING = (
    "matplotlib is needed for the plot. Install the bench's extras with:\n"
    "    pip install -r bench/requirements.txt"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = q / 100 * (len(ordered) - 1)
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def plot_freshness(freshness_ms: list[float], plain_read_ms: list[float], path: Path,
                   title: str, extra: tuple[str, list[float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    data = np.asarray(freshness_ms)
    top = max(float(np.percentile(data, 99.9)), 1.0)
    bins = np.linspace(0, top, 80)
    hist.hist(np.clip(data, 0, top), bins=bins, color="#3b7dd8", alpha=0.85,
              label="command response → visible")
    if plain_read_ms:
        hist.hist(np.clip(plain_read_ms, 0, top), bins=bins, color="#999999", alpha=0.6,
                  label="plain query (baseline)")
    for q, style in ((50, "--"), (99, ":")):
        value = percentile(freshness_ms, q)
        hist.axvline(value, color="black", linestyle=style, label=f"p{q} = {value:.1f} ms")
    hist.set_xlabel("ms")
    hist.set_ylabel("commands")
    hist.legend()
    hist.set_title("Histogram")

    ordered = np.sort(data)
    cdf.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), color="#3b7dd8",
             label="freshness")
    if plain_read_ms:
        plain = np.sort(np.asarray(plain_read_ms))
        cdf.plot(plain, np.arange(1, len(plain) + 1) / len(plain), color="#999999",
                 label="plain query")
    if extra and extra[1]:
        other = np.sort(np.asarray(extra[1]))
        cdf.plot(other, np.arange(1, len(other) + 1) / len(other), color="#e08a1e",
                 label=extra[0])
    cdf.axvline(30, color="green", linestyle="--", linewidth=0.8, label="goal p50 30 ms")
    cdf.axvline(200, color="red", linestyle="--", linewidth=0.8, label="goal p99 200 ms")
    cdf.set_xscale("log")
    cdf.set_xlabel("ms (log)")
    cdf.set_ylabel("fraction ≤ x")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(loc="lower right")
    cdf.set_title("CDF")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
