"""Human-facing output: the plots (``figures``) and ``summary.md`` with its tables and verdicts (``summary``).

The package exports what the pipeline's steps call; the building blocks (gain table, curve
tables, colours) live in the two modules.
"""

from metalr.report.figures import plot_gain, plot_lr_gallery, plot_performance_profiles, plot_task_curves
from metalr.report.summary import markdown_to_html, summary_markdown

__all__ = [
    "markdown_to_html",
    "plot_gain",
    "plot_lr_gallery",
    "plot_performance_profiles",
    "plot_task_curves",
    "summary_markdown",
]
