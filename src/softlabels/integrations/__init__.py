"""Integrations of softlabels into other frameworks (``softlabels.integrations.nnunet``: nnU-Net v2)."""
