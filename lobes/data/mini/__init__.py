"""Writers of the mini corpora, one module per corpus.

:mod:`lobes.data.mini.common` (sizes, speakers, speech, PCM and the
WHAM!-like tree), :mod:`lobes.data.mini.wham`,
:mod:`lobes.data.mini.librimix` and :mod:`lobes.data.mini.voicebank`; the
entry points (``generate``, ``ensure_mini_corpus``, the command line) are
in :mod:`lobes.data.mini_corpora`.
"""
