"""Measurements of the project, kept out of the library: the faithfulness/localisation tables
(``faithfulness``, ``videoxai benchmark``; on a Ray cluster: ``ray_engine``), speed against references
(``speed``, ``metric_speed``, ``extremal_blocks``), arithmetic and memory settings (``precision``) and the running
app's memory (``app_memory``).

They may import every other package; nothing imports them but the command line, which runs ``faithfulness``.
"""
