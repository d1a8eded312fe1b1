"""The one progress bar of the framework: tqdm when it is installed and wanted, else a silent
stand-in with the same methods, so the code that moves a bar never asks whether there is one.

tqdm is optional (the course extra installs it): the core imports without it, and a missing tqdm
only means no bar, never a failed run.
"""


def progress_bar(iterable=None, description="", unit="it", total=None, enabled=True):
    """A bar over ``iterable`` (iterate over the bar), or, without one, a counter up to ``total``
    moved with ``bar.update(n)``. ``unit="B"`` counts bytes (shown as kB, MB, ...). Either way
    the bar has ``update``, ``set_postfix`` and ``close``. ``enabled=False``, or no tqdm: a
    silent bar that does nothing but iterate."""
    if enabled:
        try:
            from tqdm.auto import tqdm  # lazy: `import tinynn` should not pay for tqdm
        except ImportError:
            pass
        else:
            in_bytes = unit == "B"
            return tqdm(iterable, desc=description, total=total, unit=unit, leave=True,
                        unit_scale=in_bytes, unit_divisor=1024 if in_bytes else 1000)
    return _SilentBar(iterable)


class _SilentBar:
    """No bar: iterates over ``iterable``; update, set_postfix and close do nothing."""

    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
