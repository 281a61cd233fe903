"""What every `train` subcommand shows: a parameter table, then bars with loss, learning rate and speed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..progress_view import RichProgress, training_columns

if TYPE_CHECKING:
    from ...train.engine import RunInfo, StepReport


def counts_table(counts: list[Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("part")
    table.add_column("trainable", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for count in counts:
        table.add_row(count.part, f"{count.trainable:,}", f"{count.total:,}")
    table.add_row("all", f"{sum(c.trainable for c in counts):,}", f"{sum(c.total for c in counts):,}", style="bold")
    return table


def loss_summary(result: Any) -> str:
    """``first -> final (s/step)`` of a ``TrainResult``."""
    first = f"{result.first_loss:.4f} -> " if result.first_loss is not None else ""
    return f"{first}{result.final_loss:.4f} ({result.seconds_per_step:.2f} s/step)"


class TrainProgress(RichProgress):
    """Bars on stderr: preparation (feature caching), then the steps with loss, learning rate and tokens/s."""

    def __init__(self, *, enabled: bool = True) -> None:
        super().__init__(enabled=enabled, columns=training_columns())
        self._enabled = enabled

    def start(self, info: RunInfo) -> None:
        if self._enabled:
            self.console.print(counts_table(info.counts, f"{info.title}: parameters"))
        examples = " + ".join(f"{n} {kind}" for kind, n in info.examples.items())
        self.note(
            f"{examples} examples; {info.device} {info.precision}, {info.processes} process(es); "
            f"from step {info.start_step}"
        )
        self("train", info.start_step, info.steps)

    def step(self, report: StepReport) -> None:
        losses = " ".join(f"{k} {v:.3g}" for k, v in report.losses.items())
        lr = next(iter(report.lr.values()), 0.0)
        speed = f" · {report.tokens_per_s:,.0f} tok/s" if report.tokens_per_s else ""
        self("train", report.step, report.total)
        self.set_info("train", f"{losses} · lr {lr:.1e}{speed}")

    def note(self, message: str) -> None:
        """One plain line above the bars (no Rich markup: paths may hold brackets)."""
        if self._enabled:
            self.console.print(message, markup=False, highlight=False)
