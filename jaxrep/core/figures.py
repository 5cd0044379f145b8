"""Figures every experiment draws: training curves and per-seed bars.

``panels(n)`` opens a row of axes (Agg backend, no display needed);
``plot_curves(ax, curves)`` draws each model's training curve (median over runs
and the min–max band), so a reader sees that every compared model reached a
plateau; ``bars_with_seeds(ax, values)`` draws mean ± std bars with one dot per
seed. ``Context.save_figure(fig)`` writes the result.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def panels(num: int, *, width: float = 5.0, height: float = 3.8):
  """``(fig, axes)`` with ``num`` axes in one row (axes is always a list)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, num, figsize=(width * num, height), squeeze=False)
  return fig, list(axes[0])


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Moving average over the last axis (valid part; ``window`` ≤ 1 returns a copy)."""
  values = np.asarray(values, float)
  if window <= 1 or values.shape[-1] < window:
    return values.copy()
  kernel = np.ones(window) / window
  return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), -1, values)


def plot_curves(ax, curves: Mapping[str, np.ndarray], *, ylabel: str = "training loss",
                logy: bool = True, num_points: int = 200, title: str | None = None) -> None:
  """One line per label: ``curves[label]`` is (..., steps) over runs (any leading
  axes); draws the median over runs and the min–max band, smoothed over about
  steps/num_points steps."""
  for label, values in curves.items():
    values = np.asarray(values, float)
    values = values.reshape(-1, values.shape[-1])
    window = max(1, values.shape[-1] // num_points)
    values = smooth(values, window)
    steps = np.arange(values.shape[-1]) + window
    line, = ax.plot(steps, np.nanmedian(values, 0), label=label)
    if values.shape[0] > 1:
      ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0),
                      color=line.get_color(), alpha=0.2, linewidth=0)
  ax.set(xlabel="step", ylabel=ylabel, title=title)
  if logy:
    ax.set_yscale("log")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")


def bars_with_seeds(ax, values: Mapping[str, Any], *, ylabel: str,
                    title: str | None = None, colors: Sequence[str] | None = None) -> None:
  """Mean ± std bars, one per label, with each seed's value as a dot."""
  for i, (label, seeds) in enumerate(values.items()):
    seeds = np.asarray(seeds, float).reshape(-1)
    color = None if colors is None else colors[i % len(colors)]
    ax.bar(i, np.nanmean(seeds), yerr=np.nanstd(seeds) if seeds.size > 1 else None,
           color=color, alpha=0.7, capsize=3)
    ax.scatter(np.full(seeds.shape, i), seeds, color="k", s=10, zorder=3)
  ax.set_xticks(range(len(values)), list(values), rotation=20, ha="right")
  ax.set(ylabel=ylabel, title=title)
  ax.grid(alpha=0.3, axis="y")
