"""Class attributions and how far to trust them.

- :mod:`.attribution`: one ``attribute`` call over Captum's methods and the SepViT relevance;
- :mod:`.relevance`: the class-specific relevance carried through SepViT's windows and groups;
- :mod:`.baselines`: reference inputs (black, blurred, noise) for path and removal methods;
- :mod:`.faithfulness`: deletion / insertion curves and ROAD;
- :mod:`.sanity`: the model-randomisation sanity check (cascading, per stage);
- :mod:`.scorecard`: every measure and a readable verdict per method.
"""
