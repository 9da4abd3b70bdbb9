"""``envfoundry agree``: how far a grader (an LLM judge, an environment's grader) agrees with
labels, and how far annotators agree with each other.

:func:`agree` is the whole workflow as a library call (the CLI parses, calls it and prints). Its
parts: reading labels, scores and transcripts (:mod:`.labels`, :mod:`.tables`), the labelled sets
environments ship and the scores stored in runs (:mod:`.sources`), running a judge (:mod:`.judge`).
The computation on the records is :func:`envfoundry.grading.compare.compare`, which needs none of this.
"""

from ...grading.agreement_report import AgreementReport, Metric
from ...grading.compare import MAX_BOOT, compare
from .config import MAX_REPEATS, AgreeConfig
from .judge import PROBES, Judge, close_judge, resolve_judge, run_judge
from .labels import SCALES, check_items, check_scores, load_items, load_jsonl, load_labels, load_scores
from .sources import check_save, scores_from_run, shipped_labels, write_jsonl
from .workflow import agree

__all__ = [
    "MAX_BOOT", "MAX_REPEATS", "PROBES", "SCALES", "AgreeConfig", "AgreementReport", "Judge", "Metric", "agree",
    "check_items", "check_save", "check_scores", "close_judge", "compare", "load_items", "load_jsonl", "load_labels",
    "load_scores", "resolve_judge", "run_judge", "scores_from_run", "shipped_labels", "write_jsonl",
]
