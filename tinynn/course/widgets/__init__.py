"""Dashboards for experimenting by hand: the learning-rate lab and a 2-D playground.

    dashboard.py    what both share: training thread, Stop, progress bar, status, live plot
    lr_lab.py       LearningRateLab (and its Run), lr_range_test with a plot()
    playground.py   Playground

``LearningRateLab(x, y, validation=(xv, yv))`` trains a small MLP with the learning rate, optimizer,
schedule, batch size, epochs and hidden layers you pick; every run's loss curve stays on the plot
(faded) so runs can be compared, and a *learning-rate range test* suggests a good rate.
``Playground()`` is a TensorFlow-Playground-like panel: a 2-D data set, a net, and its decision
regions redrawn while it learns.

Both train in a background thread, so the notebook stays responsive and **Stop** really stops a run
(it sets ``model.stop_training``; the run ends after the current step, with consistent weights).
From code, ``lab.train(wait=True)`` runs in the calling thread and returns when done: that is how
the notebooks and tests use them. The widgets themselves are attributes (``lab.lr_slider``,
``lab.train_button``, ...), so ``lab.lr_slider.value = 0.01`` or ``lab.train_button.click()`` does
exactly what the mouse would.

ipywidgets and matplotlib are imported only when a dashboard is built. The range test itself is
the framework's ``tinynn.lr_range_test`` (tinynn/lr_finder.py); ``lr_range_test`` here returns its
result with a ``plot()`` method.
"""
from .dashboard import Dashboard, DashboardCallback, parse_hidden, stopped_by_you
from .lr_lab import (RUNS_SHOWN, LearningRateLab, PlottableRangeTestResult, Run, lr_range_test,
                     make_schedule, steps_as_epochs)
from .playground import Playground

__all__ = ["LearningRateLab", "Playground", "Run", "lr_range_test", "PlottableRangeTestResult",
           "make_schedule", "parse_hidden", "steps_as_epochs", "stopped_by_you", "RUNS_SHOWN",
           "Dashboard", "DashboardCallback"]
