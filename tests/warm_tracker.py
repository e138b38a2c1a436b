"""Imported by a fork server (test_video_track's alignment-worker test): the tracker's modules and dlib's
detector and landmark model loaded once, in the server, before the workers are forked from it. A worker
that loads the models itself spends 1.3 CPU-seconds on it."""

from jojogan.inversion.align import warm_up_detector
from jojogan.video import track  # noqa: F401  (imported for the workers)

warm_up_detector()
