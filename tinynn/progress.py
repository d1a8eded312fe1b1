"""The one progress bar of the framework: tqdm when it is installed, nothing when it is not.

tqdm is optional (the course extra installs it): the core imports without it, and a missing tqdm
only means no bar, never a failed run.
"""


def progress_bar(iterable=None, description="", unit="it", total=None):
    """A tqdm bar over ``iterable``, or, without one, a counter up to ``total`` that the caller
    moves with ``bar.update(n)`` and ends with ``bar.close()``. ``unit="B"`` counts bytes (shown
    as kB, MB, ...). Without tqdm: ``iterable`` itself (None when there is none)."""
    try:
        from tqdm.auto import tqdm  # lazy: importing tqdm costs time `import tinynn` should not pay
    except ImportError:
        return iterable
    in_bytes = unit == "B"
    return tqdm(iterable, desc=description, total=total, unit=unit, unit_scale=in_bytes,
                unit_divisor=1024 if in_bytes else 1000, leave=True)
