"""The pictures of ``tinytl explain`` and of the demo's "explain" section (matplotlib, optional).

Each function draws on a Figure of its own (an Agg canvas, no pyplot state) and returns it, or
returns None when matplotlib is not installed (``pip install 'tinytl[demo]'`` gives it).
"""
from __future__ import annotations

import numpy as np


def figure(width=6.4, height=4.2, layout=None):
    """A matplotlib Figure on its own Agg canvas, or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=120, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def cka_heatmaps(sims: dict, title: str = "linear CKA"):
    """One heatmap per ``LayerSimilarity`` of ``sims`` (label -> result), values written in
    (colour scale fixed: 0 dark violet to 1 yellow)."""
    fig = figure(3.6 * len(sims) + 0.4, 3.6)
    if fig is None:
        return None
    axes = fig.subplots(1, len(sims), squeeze=False)[0]
    for ax, (label, sim) in zip(axes, sims.items()):
        m = np.asarray(sim.matrix)
        ax.imshow(m, vmin=0, vmax=1, cmap="viridis", origin="upper")     # 0 dark, 1 yellow
        ax.set_xticks(range(len(sim.layers_b)), sim.layers_b)
        ax.set_yticks(range(len(sim.layers_a)), sim.layers_a)
        ax.set_xlabel("layer (after)")
        ax.set_ylabel("layer (before)")
        ax.set_title(f"{title}: {label}", fontsize=9)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if m[i, j] > 0.6 else "white")
    return fig


def drift_bars(drifts: dict):
    """Grouped bars of the relative drift per layer: ``drifts`` is label -> {layer: value or None
    (replaced)}; a replaced layer is marked, not drawn as a bar."""
    fig = figure(6.4, 3.8)
    if fig is None:
        return None
    ax = fig.add_subplot(1, 1, 1)
    layers = list(next(iter(drifts.values())))
    width = 0.8 / len(drifts)
    for k, (label, per) in enumerate(drifts.items()):
        xs = np.arange(len(layers)) + (k - (len(drifts) - 1) / 2) * width
        vals = [per.get(layer) for layer in layers]
        ax.bar([x for x, v in zip(xs, vals) if v is not None], [v for v in vals if v is not None], width,
               label=label)
        for x, v in zip(xs, vals):
            if v is None:
                ax.text(x, 0, "new", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(layers)), [f"layer {layer}" for layer in layers])
    ax.set_ylabel("||W_after - W_before|| / ||W_before||")
    ax.set_title("weight drift per layer", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def probe_lines(probes: dict):
    """Test accuracy of a linear probe after each layer: ``probes`` is label -> ProbeResult."""
    fig = figure(6.4, 3.6)
    if fig is None:
        return None
    ax = fig.add_subplot(1, 1, 1)
    for label, res in probes.items():
        ax.plot(range(len(res.layers)), [100 * a for a in res.accuracy], marker="o", label=label)
        ax.set_xticks(range(len(res.layers)), res.layers)
    ax.set_xlabel("features after layer")
    ax.set_ylabel("probe test accuracy (%)")
    ax.set_title("where the task's information sits", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def attribution_panels(signals, attributions: dict, titles):
    """One panel per example: the input signal as a line, coloured by each attribution.

    Args:
        signals: (E, L) the inputs.
        attributions: label -> (E, L) attributions (each row scaled to its largest |value|).
        titles: one title per example.
    """
    signals = np.asarray(signals)
    rows, cols = len(attributions), len(signals)
    fig = figure(2.3 * cols + 0.6, 1.9 * rows + 0.4)
    if fig is None:
        return None
    axes = fig.subplots(rows, cols, squeeze=False)
    t = np.arange(signals.shape[1])
    for r, (label, attr) in enumerate(attributions.items()):
        attr = np.asarray(attr)
        for c in range(cols):
            ax = axes[r][c]
            a = attr[c] / max(float(np.abs(attr[c]).max()), 1e-12)
            ax.bar(t, a * np.abs(signals[c]).max(), width=1.0, color=np.where(a >= 0, "tab:red", "tab:blue"),
                   alpha=0.45)
            ax.plot(t, signals[c], color="black", lw=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("integrated gradients over the input (red: for the class, blue: against)", fontsize=9)
    return fig


def save(fig, path) -> bool:
    """Write ``fig`` as a PNG at ``path``; False (nothing written) when fig is None."""
    if fig is None:
        return False
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, format="png")
    return True
