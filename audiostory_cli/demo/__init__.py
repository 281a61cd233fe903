"""The demo model and the measurements on the foley world: ``recipe`` (``audiostory train demo``: the model built
from nothing on the foley world), ``eval`` (``audiostory eval``: held-out foley stories against a direct
text-to-audio baseline) and ``eval_edits`` (``audiostory eval --edits``)."""
