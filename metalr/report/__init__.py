"""Human-facing output: the plots (``figures``) and ``summary.md`` with its tables and verdicts (``summary``)."""

from metalr.report.figures import (
    curve_panels,
    curve_table,
    draw_lr_gallery,
    draw_performance_profiles,
    draw_task_curves,
    plot_lr_gallery,
    plot_performance_profiles,
    plot_task_curves,
)
from metalr.report.summary import markdown_to_html, summary_markdown

__all__ = [
    "curve_panels",
    "curve_table",
    "draw_lr_gallery",
    "draw_performance_profiles",
    "draw_task_curves",
    "markdown_to_html",
    "plot_lr_gallery",
    "plot_performance_profiles",
    "plot_task_curves",
    "summary_markdown",
]
