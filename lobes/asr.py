"""Old path of :mod:`lobes.transcription`, kept while YAMLs name it."""

from lobes.transcription import *  # noqa: F401,F403
