"""Errors a user can act on: every message names the fix."""


class QAError(Exception):
    """Base class: shown to users as one line, never as a traceback."""


class BadQuestion(QAError):
    """The question is empty, too long, or otherwise unusable."""


class IndexProblem(QAError):
    """The index is missing, corrupt, or does not match the corpus or model."""


class IndexUnwritable(IndexProblem):
    """The index cannot be (re)built where it is: read-only folder, full disk."""


class CorpusProblem(QAError):
    """The corpus folder is missing, empty, or has an unreadable file."""


class ModelProblem(QAError):
    """The sentence model cannot be prepared or loaded."""
