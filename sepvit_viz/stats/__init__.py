"""What each block and head does across many photos.

- :mod:`.measures`: per block and head statistics (attention distance, entropy, ...);
- :mod:`.plots`: their plots (matplotlib's Figure API);
- :mod:`.cli`: ``python -m sepvit_viz stats`` (CSV, plots, index.html).
"""
