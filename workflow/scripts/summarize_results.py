from pathlib import Path

from metalr.logs import log_to
from metalr.pipeline import summarize_results

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    summarize_results(
        Path(sm.input.evaluation[0]).parent,
        sm.input.runs,
        [Path(c).parent for c in sm.input.checkpoint_configs],
        sm.output.table,
        sm.output.markdown,
        sm.output.html,
        sm.output.gain,
    )
