"""Jobs over many files: ``vidsr batch SRC OUT_DIR`` (sources, job file, runner, report)."""

from vidsr.commands.batch.file_job import FileRun
from vidsr.commands.batch.report import BatchResult, FileOutcome, write_report
from vidsr.commands.batch.runner import BatchOptions, run_batch

__all__ = ["BatchOptions", "BatchResult", "FileOutcome", "FileRun", "run_batch",
           "write_report"]
