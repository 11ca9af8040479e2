"""Entropy coding, in one place: :mod:`tcodec.coding.entropy` (the only user of
constriction) and the caption coder built on it, :mod:`tcodec.coding.captions`."""
