"""Training and scoring of the embedded models on SynthActions-10: ``train`` (``videoxai train``) and ``accuracy``
(``videoxai accuracy``).

Kept apart from the zoo's runtime modules: it is the only code that writes weights and cards, and nothing the app,
the explainers or a loader runs imports it.
"""
