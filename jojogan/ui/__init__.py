"""The local web UI (``jojogan ui``) and the Gradio-free façade it is built on.

:class:`Studio` and :class:`StyleLibrary` need no web framework; :mod:`jojogan.ui.app` builds the Gradio
page over a studio and imports Gradio only when called (``pip install "jojogan[ui]"``).
"""

from jojogan.ui.library import LibraryError, LibraryStyle, StyleLibrary
from jojogan.ui.studio import ReferenceCrop, Studio, TrainingCancelled, TrainingJob, TrainingProgress

__all__ = [
    "LibraryError",
    "LibraryStyle",
    "ReferenceCrop",
    "StyleLibrary",
    "Studio",
    "TrainingCancelled",
    "TrainingJob",
    "TrainingProgress",
]
