"""FiberTracker: the number of fibers of every layer, recorded over training."""

from ._entry import _tolerance, _trace
from ._names import layer_name


class FiberTracker:
    """Call it (for example once per epoch) to record the number of classes of
    every layer under `symmetry`; `plot(path)` draws them (and the accuracy,
    when given) with matplotlib.

        tracker = FiberTracker(model, x)
        for epoch in ...:
            train(...)
            tracker(accuracy=test_accuracy)
        tracker.plot("fibers.png")
    """

    def __init__(self, model, example_input, eps=0.0, tolerance="exact",
                 symmetry="fibers"):
        self.model = model
        self.example_input = example_input
        self.eps = eps
        self.tolerance = _tolerance(eps, tolerance)
        self.symmetry = symmetry
        self.steps = []       # the step of each record
        self.fibers = {}      # layer -> list of class counts, one per record
        self.units = {}       # layer -> width
        self.accuracy = []    # one per record (None when not given)

    def __call__(self, accuracy=None, step=None):
        net = _trace(self.model, self.example_input)
        coloring = net.graph.color(self.symmetry, self.tolerance, self.eps)
        counts = {}
        for layer in net.layers:
            if layer.kind == "input":
                continue
            name = layer_name(layer)
            counts[name] = coloring.num_classes(layer.group)
            self.units[name] = layer.width
            self.fibers.setdefault(name, [None] * len(self.steps))
        for name, series in self.fibers.items():
            series.append(counts.get(name))
        self.steps.append(len(self.steps) if step is None else step)
        self.accuracy.append(accuracy)
        return counts

    record = __call__

    def plot(self, path=None, title=None):
        """Draws fibers per layer (as a fraction of its units) against the
        step, and the accuracy on a second axis; saves to `path` if given.
        Returns the matplotlib Figure."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, series in self.fibers.items():
            # matplotlib leaves out of the legend every label starting with
            # '_' (an fx node name may): say "layer".
            ax.plot(self.steps, series, marker="o", label="layer %s (%d units)"
                    % (name, self.units[name]))
        ax.set_xlabel("step")
        ax.set_ylabel("number of %s" % self.symmetry)
        if any(a is not None for a in self.accuracy):
            ax2 = ax.twinx()
            ax2.plot(self.steps, self.accuracy, color="black", linestyle="--",
                     label="accuracy")
            ax2.set_ylabel("accuracy")
            ax2.legend(loc="lower right")
        ax.legend(loc="upper left", fontsize="small")
        ax.set_title(title or "%s per layer over training" % self.symmetry)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig
