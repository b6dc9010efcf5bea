"""Stand-in corpora: small generated datasets in the formats of the real ones (ScribbleLens, Kaldi/WSJ).

They let tests, examples and CPU-scale experiments run without the licensed corpora. Kept out of
:mod:`vq_hf.data` (which loads real corpora) so the data package holds only loaders and collators.

* :mod:`vq_hf.standins.speech` — ``vq-hf make-speech-corpus``: Festival-spoken CMU ARCTIC prompts as Kaldi folders.
* :mod:`vq_hf.standins.handwriting` — ``vq-hf make-handwriting-corpus``: rendered handwriting lines as a
  ScribbleLens-format zip.
"""
