"""The identity stage: face-recognition networks that say how much of the person survives a style.

``load_face_recognizer(name, path=None, device="cpu")`` returns a :class:`FaceRecognizer` whose
``.embed`` is the identity network of :func:`jojogan.finetune.finetune` (for the differentiable ones) and
whose ``.score`` compares two aligned faces and judges them by the network's published "same person"
rule (:class:`IdentityScore`: raw score, threshold, verdict, source). :data:`RECOGNIZERS` is the table of
networks, their weights, licences and verification rules. :mod:`jojogan.identity.metric` measures results
(one score, the curve over a slider's alphas, a plot).

The package is lazy (:mod:`jojogan.op.lazy`): the command line reads the table of networks and their
rules to build its options, and the networks would load torch into every command, ``--help`` included.
The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

# public name -> the module that owns it
_EXPORTS = {
    "RECOGNITION_SIZE": "jojogan.identity.crops",
    "IdentityError": "jojogan.identity.errors",
    "MissingExtraError": "jojogan.identity.errors",
    "load_face_recognizer": "jojogan.identity.loaders",
    "load_identity_loss_network": "jojogan.identity.loaders",
    "IdentityCurve": "jojogan.identity.metric",
    "compare_faces": "jojogan.identity.metric",
    "identity_curve": "jojogan.identity.metric",
    "identity_metadata": "jojogan.identity.metric",
    "identity_score": "jojogan.identity.metric",
    "plot_identity_curve": "jojogan.identity.metric",
    "FaceRecognizer": "jojogan.identity.recognizer",
    "TorchRecognizer": "jojogan.identity.recognizer",
    "DEFAULT_LOSS_NETWORK": "jojogan.identity.registry",
    "DEFAULT_METRIC_NETWORK": "jojogan.identity.registry",
    "RECOGNIZERS": "jojogan.identity.registry",
    "RecognizerInfo": "jojogan.identity.registry",
    "verification_rule": "jojogan.identity.registry",
    "IdentityScore": "jojogan.identity.verdict",
    "VerificationRule": "jojogan.identity.verdict",
}

__all__ = sorted(_EXPORTS)

make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.identity.crops import RECOGNITION_SIZE  # noqa: F401
    from jojogan.identity.errors import IdentityError, MissingExtraError  # noqa: F401
    from jojogan.identity.loaders import load_face_recognizer, load_identity_loss_network  # noqa: F401
    from jojogan.identity.metric import (  # noqa: F401
        IdentityCurve,
        compare_faces,
        identity_curve,
        identity_metadata,
        identity_score,
        plot_identity_curve,
    )
    from jojogan.identity.recognizer import FaceRecognizer, TorchRecognizer  # noqa: F401
    from jojogan.identity.registry import (  # noqa: F401
        DEFAULT_LOSS_NETWORK,
        DEFAULT_METRIC_NETWORK,
        RECOGNIZERS,
        RecognizerInfo,
        verification_rule,
    )
    from jojogan.identity.verdict import IdentityScore, VerificationRule  # noqa: F401
