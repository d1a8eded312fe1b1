"""The playground, like TensorFlow Playground: a 2-D data set (spirals, moons or circles) with
the noise you pick, a small MLP with the hidden layers and activation you pick, and its decision
regions redrawn while it learns.

    pg = Playground(dataset="moons", hidden=(8,), activation="relu")
    pg.train(wait=True); pg.accuracy()
"""
from ... import optimizers as optim  # get() by name
from ... import Model
from ...data import circles, moons, spirals
from ...errors import ConfigError
from ...losses import SoftmaxCrossEntropy
from ...models import ACTIVATIONS, build_mlp
from ...random import seed as seed_everything
from .dashboard import Dashboard, DashboardCallback, load_ipywidgets, parse_hidden, stopped_by_you

DATASETS = {"spirals": spirals, "moons": moons, "circles": circles}


class Playground(Dashboard):
    """A TensorFlow-Playground-like panel: pick a 2-D data set, its noise, the hidden layers,
    the activation and the learning rate, press Train and watch the decision regions form.

    Train continues from the current weights (press it again to train longer); changing the
    data or the architecture builds a new net; Reset draws new initial weights."""

    css_class = "tinynn-playground"

    def __init__(self, dataset="spirals", noise=0.2, n_samples=300, hidden=(16, 16),
                 activation="tanh", optimizer="adam", lr=0.03, epochs=100, batch_size=32, seed=0):
        super().__init__()
        w = load_ipywidgets()
        self.n_samples, self.optimizer_name, self.batch_size = n_samples, optimizer, batch_size
        self.seed, self.losses = seed, []
        wide = {"description_width": "initial"}
        self.dataset_menu = w.Dropdown(options=list(DATASETS), value=dataset, description="data",
                                       layout=w.Layout(width="180px"))
        self.noise_slider = w.FloatSlider(value=noise, min=0.0, max=0.5, step=0.05,
                                          description="noise", continuous_update=False)
        self.hidden_text = w.Text(value=", ".join(map(str, hidden)), description="hidden layers",
                                  continuous_update=False, style=wide, layout=w.Layout(width="230px"))
        self.activation_menu = w.Dropdown(options=list(ACTIVATIONS), value=activation,
                                          description="activation", style=wide,
                                          layout=w.Layout(width="200px"))
        self.lr_slider = w.FloatLogSlider(value=lr, base=10, min=-4, max=0.5, step=0.05,
                                          description="learning rate", readout_format=".1e",
                                          continuous_update=False, style=wide)
        self.epochs_slider = w.IntSlider(value=epochs, min=10, max=max(1000, epochs), step=10,
                                         description="epochs", continuous_update=False)
        self.train_button = w.Button(description="Train", icon="play", button_style="primary")
        self.reset_button = w.Button(description="Reset", icon="refresh")
        self.train_button.on_click(lambda _: self.train())
        self.reset_button.on_click(lambda _: self.reset())
        for control in (self.dataset_menu, self.noise_slider, self.hidden_text, self.activation_menu):
            control.observe(lambda _: self.rebuild(), names="value")
        self.lr_slider.observe(self._on_lr, names="value")
        self.widget = w.VBox([
            w.HBox([self.dataset_menu, self.noise_slider, self.hidden_text, self.activation_menu]),
            w.HBox([self.lr_slider, self.epochs_slider]),
            w.HBox([self.train_button, self.stop_button, self.reset_button, self.progress]),
            self.status,
            self.plot,
        ]).add_class(self.css_class)
        self.rebuild()

    def _controls(self):
        return [self.train_button, self.reset_button, self.dataset_menu, self.noise_slider,
                self.hidden_text, self.activation_menu, self.epochs_slider]

    def rebuild(self):
        """New data from the data set and noise widgets and a new net from the architecture
        widgets (initial weights from ``self.seed``)."""
        if self.running:
            self._say("stop the run before changing the data or the net")
            return
        make = DATASETS[self.dataset_menu.value]
        self.x, self.y = make(n_samples=self.n_samples, noise=self.noise_slider.value, seed=self.seed)
        try:
            hidden = parse_hidden(self.hidden_text.value)
        except ConfigError as e:
            self._say(f"<b>error</b>: {e}")
            return
        seed_everything(self.seed)
        net = build_mlp(hidden, int(self.y.max()) + 1, self.activation_menu.value,
                        init="xavier_uniform")
        net.forward(self.x[:1], training=False)
        self.model = self._active = Model(net, SoftmaxCrossEntropy(),
                                          optim.get(self.optimizer_name, lr=float(self.lr_slider.value)))
        self.losses = []
        self.progress.value = 0
        self._say(f"{self.dataset_menu.value}: {len(self.x)} points, net {list(hidden)} "
                  f"{self.activation_menu.value}; press Train")
        self._redraw()

    def reset(self):
        """New initial weights (the next seed) for the same data and architecture."""
        if self.running:
            self.stop()
            self.wait()
        self.seed += 1
        self.rebuild()

    def _on_lr(self, change):
        if self.model is not None:
            self.model.optimizer.lr = change["new"]

    def accuracy(self):
        return self.model.evaluate(self.x, self.y)["accuracy"]

    def train(self, wait=False):
        """Train the current net for the chosen number of epochs (continuing where it was)."""
        if self.running or self.model is None:
            return None
        epochs, model = int(self.epochs_slider.value), self.model
        self.progress.max = epochs * -(-len(self.x) // self.batch_size)
        self.progress.value = 0
        done_before = len(self.losses)

        def describe():
            last = model.history["step_loss"][-1] if model.history["step_loss"] else float("nan")
            return f"step {done_before + len(model.history['step_loss'])} · loss {last:.4f}"

        def job():
            history = model.fit(self.x, self.y, epochs=epochs, batch_size=self.batch_size,
                                seed=self.seed + done_before, callbacks=[DashboardCallback(self, describe)])
            self.losses.extend(history["step_loss"])
            self.live_history = None
            steps = len(history["step_loss"])
            self.progress.value = self.progress.max if not history["stopped"] else steps
            ending = f" ({history['stopped']})" if history["stopped"] else ""
            if self._stop.is_set() and not str(history["stopped"]).startswith("diverged") \
                    and steps < self.progress.max:  # asked after fit, as in the lab
                ending = f" ({stopped_by_you(steps, self.progress.max)})"
            self._redraw()
            self._say(f"{len(self.losses)} steps · loss {history['step_loss'][-1]:.4f} · "
                      f"accuracy {self.accuracy():.3f}{ending}")
            return history

        return self._start(job, wait)

    def figure(self):
        """Decision regions (left) and the training loss of every step so far (right)."""
        from matplotlib.figure import Figure

        from ..viz import draw_decision_boundary, draw_loss_curve, placeholder
        fig = Figure(figsize=(10, 4.2), dpi=80)
        boundary, loss = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
        draw_decision_boundary(boundary, self.model, self.x, self.y, resolution=70)
        boundary.set_title(f"{self.dataset_menu.value} · accuracy {self.accuracy():.3f}")
        values = self.losses + list((self.live_history or {}).get("step_loss", []))
        if values:
            draw_loss_curve(loss, values)
        else:
            placeholder(loss, "press Train:\nthe loss of every step appears here")
        loss.set_title("loss")
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.2)
        return fig
