"""Collection rules for the whole repository (doctests of src/ included).

Modules that import an optional extra are not collected where it is missing: the nnU-Net trainers need ``nnunetv2``,
which lives in its own environment (``scripts/setup_nnunet.sh``), where ``scripts/test.sh`` runs them.
"""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("nnunetv2") is None:
    collect_ignore += [
        "src/softlabels/integrations/nnunet/trainers.py",
        "src/softlabels/integrations/nnunet_external",
    ]
