"""Human-facing output: the plots (``figures``) and ``summary.md`` with its tables and verdicts (``summary``)."""

from metalr.report.figures import (
    SCHEDULER_COLOURS,
    TUNED_COSINE,
    UNTUNED_COSINE,
    VERDICT_COLOURS,
    curve_panels,
    curve_table,
    draw_gain,
    draw_lr_gallery,
    draw_performance_profiles,
    draw_task_curves,
    gain_table,
    plot_gain,
    plot_lr_gallery,
    plot_performance_profiles,
    plot_task_curves,
    verdict_kind,
)
from metalr.report.summary import framing_sentences, markdown_to_html, summary_markdown

__all__ = [
    "SCHEDULER_COLOURS",
    "TUNED_COSINE",
    "UNTUNED_COSINE",
    "VERDICT_COLOURS",
    "curve_panels",
    "curve_table",
    "draw_gain",
    "draw_lr_gallery",
    "draw_performance_profiles",
    "draw_task_curves",
    "framing_sentences",
    "gain_table",
    "markdown_to_html",
    "plot_gain",
    "plot_lr_gallery",
    "plot_performance_profiles",
    "plot_task_curves",
    "summary_markdown",
    "verdict_kind",
]
