"""``jaxrep reproduce``'s time budget: the main paper first, then what fits at this machine's speed.

Each paper's recorded runtime (``jaxrep/records/<id>.json``) is rescaled by a
speed factor learned from the papers already run here (measured wall time over
recorded runtime); a paper runs if that estimate fits the budget left, else it
becomes a SKIPPED scoreboard row saying why.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

from jaxrep import registry

DEFAULT_BUDGET_S = 800.0  # 15 minutes less a margin for start-up and timing noise
MAIN_PAPER = "locality_dsd"


def format_minutes(seconds: float) -> str:
  """``75 -> '1.2 min'``."""
  return f"{seconds / 60:.1f} min"


@dataclasses.dataclass
class SpeedEstimate:
  """This machine's speed relative to the records: total measured wall time over
  total recorded runtime of the papers run so far (1.0 before the first)."""
  wall_s: float = 0.0
  recorded_s: float = 0.0
  papers: int = 0

  @property
  def factor(self) -> float:
    return self.wall_s / self.recorded_s if self.recorded_s > 0 else 1.0

  def update(self, wall_s: float, recorded_s: float) -> None:
    self.wall_s += wall_s
    self.recorded_s += recorded_s
    self.papers += 1


def budget_order(ids: Sequence[str]) -> list[str]:
  """``MAIN_PAPER`` first, then the others in the given (registry) order."""
  return sorted(ids, key=lambda paper_id: paper_id != MAIN_PAPER)


def skipped_row(paper_id: str, note: str, estimate_s: float | None,
                budget_left_s: float) -> dict[str, Any]:
  """A scoreboard row for a paper not run, ``note`` saying why."""
  from jaxrep import scoreboard
  try:
    title, claim = registry.get(paper_id).title, registry.get(paper_id).claim
  except KeyError:
    title, claim = paper_id, ""
  row = scoreboard.row_from_results(paper_id, title, None, "", verdict="SKIPPED", note=note)
  row.update(claim=claim, estimate_s=estimate_s, budget_left_s=max(budget_left_s, 0.0))
  return row


def _skip_note(paper_id: str, estimate_s: float | None, left_s: float) -> str | None:
  """Why the paper does not fit the budget left, or None when it does."""
  if estimate_s is None:
    return f"skipped: no recorded runtime (run `jaxrep reproduce {paper_id}`)"
  if estimate_s > left_s:
    return (f"skipped: estimated {format_minutes(estimate_s)} on this machine, "
            f"budget left {format_minutes(max(left_s, 0.0))}")
  return None


def run_within_budget(ids: Sequence[str], budget_s: float,
                      run_paper: Callable[[str], dict[str, Any]],
                      recorded_runtime: Callable[[str], float | None], *,
                      clock: Callable[[], float] = time.monotonic,
                      log: Callable[[str], None] = print) -> tuple[list[dict], SpeedEstimate]:
  """Runs ``MAIN_PAPER`` first, then, in order, every paper whose recorded runtime
  × this machine's speed factor (learned from the papers already run) fits the
  budget left; the others become SKIPPED rows saying why.

  ``run_paper(id)`` returns a scoreboard row (its ``verdict`` "ERROR" when the run
  raised); a paper without a recorded runtime is skipped (run it by id).
  """
  start, speed, rows = clock(), SpeedEstimate(), []
  for paper_id in budget_order(ids):
    recorded = recorded_runtime(paper_id)
    left = budget_s - (clock() - start)
    estimate = None if recorded is None else recorded * speed.factor
    note = _skip_note(paper_id, estimate, left)
    if note is not None:
      rows.append(skipped_row(paper_id, note, estimate, left))
      log(f"{paper_id}: {note}")
      continue
    began = clock()
    row = run_paper(paper_id)
    wall = clock() - began
    if row.get("verdict") != "ERROR":
      speed.update(wall, recorded)
    row.update(wall_s=wall, recorded_runtime_s=recorded, speed_factor=speed.factor)
    rows.append(row)
    log(f"{paper_id}: {format_minutes(wall)} here vs {format_minutes(recorded)} recorded; "
        f"speed factor now {speed.factor:.2f}× (over {speed.papers} paper(s))")
  return rows, speed


def speed_notes(speed: SpeedEstimate, budget_s: float | None) -> list[str]:
  """The scoreboard's note on the measured speed factor (none before a paper ran)."""
  if not speed.papers:
    return []
  note = (f"speed factor on this machine: {speed.factor:.2f}× the recorded runtimes "
          f"(measured wall {format_minutes(speed.wall_s)} / recorded "
          f"{format_minutes(speed.recorded_s)} over {speed.papers} paper(s))")
  if budget_s is not None:
    note += f"; budget {format_minutes(budget_s)}"
  return [note]
